//! The SQL result tables `pipeline run aggregate` writes from the shipped `sql/*.sql` files,
//! and the columns of them that other crates read. The SQL files define these tables; a test
//! over a real pipeline's output (`tests/it`) checks that they still produce these columns.

/// The aggregate tables, in the order the report shows them.
pub const TABLES: &[&str] = &[MODEL_SUMMARY, LAB_SUMMARY, LAYER_PROFILE];

/// `model_summary`: one row per model (`sql/model_summary.sql`).
pub const MODEL_SUMMARY: &str = "model_summary";
/// `lab_summary`: one row per lab (`sql/lab_summary.sql`).
pub const LAB_SUMMARY: &str = "lab_summary";
/// `layer_profile`: one row per model, kind, scope and layer (`sql/layer_profile.sql`).
pub const LAYER_PROFILE: &str = "layer_profile";
/// `sql/trajectory.sql`: per model at several revisions, metrics by training step (drawn by
/// the report as figures, not shown as a table, so not in [`TABLES`]).
pub const TRAJECTORY: &str = "trajectory";

/// Columns of `model_summary`.
pub mod model_summary {
    /// The model id.
    pub const MODEL: &str = "model";
    /// The model's revision.
    pub const REVISION: &str = "revision";
    /// The mean over layers of the whole-layer W_V spectral norm.
    pub const W_V_MEAN: &str = "w_v_mean";
}
