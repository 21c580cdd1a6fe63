//! The build profiles in Cargo.toml: the crates the dev profile optimises (the hot path) are the
//! crates the release profile optimises, so neither build route leaves a hot crate slow; the
//! crates release leaves unoptimised for its build time are optimised again in the wheel's
//! `dist` profile.

use std::collections::BTreeSet;

/// The packages a profile's `[profile.NAME.package.*]` tables set to `opt-level = level`.
fn at_level(manifest: &toml::Table, profile: &str, level: i64) -> BTreeSet<String> {
    let packages = manifest["profile"][profile]["package"]
        .as_table()
        .unwrap_or_else(|| panic!("Cargo.toml has no [profile.{profile}.package] tables"));
    packages
        .iter()
        .filter(|(name, _)| name.as_str() != "*")
        .filter(|(_, table)| {
            table.get("opt-level").and_then(toml::Value::as_integer) == Some(level)
        })
        .map(|(name, _)| name.clone())
        .collect()
}

#[test]
fn release_optimises_the_hot_crates_and_dist_optimises_everything() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")).unwrap();
    let manifest: toml::Table = text.parse().unwrap();
    let level = |p: &str| {
        manifest["profile"][p]
            .get("opt-level")
            .and_then(toml::Value::as_integer)
    };
    let dev = at_level(&manifest, "dev", 3);
    assert!(
        dev.contains("attn-spectra") && dev.contains("faer"),
        "the dev hot list lost the core crate or faer"
    );
    assert!(
        dev.len() > 40,
        "the dev hot list shrank to {} crates",
        dev.len()
    );
    assert_eq!(
        dev.symmetric_difference(&at_level(&manifest, "release", 3))
            .collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "crates optimised in one profile only; keep the dev and release lists in Cargo.toml the same"
    );
    // Release: everything else at opt-level 1 except the SQL engine at 0 (issue 15's build time);
    // `package."*"` sets no opt-level, which would outrank build-override for proc macros.
    assert_eq!(level("release"), Some(1));
    let star = &manifest["profile"]["release"]["package"]["*"];
    assert_eq!(
        star.get("opt-level"),
        None,
        "package.\"*\" must not set opt-level in release"
    );
    let unoptimised = at_level(&manifest, "release", 0);
    assert!(unoptimised.contains("datafusion") && unoptimised.contains("sqlparser"));
    // Dist (the wheel): opt-level 3, and every crate release leaves at 0 put back at 3 (custom
    // profiles inherit release's package overrides).
    assert_eq!(level("dist"), Some(3));
    assert_eq!(at_level(&manifest, "dist", 0), BTreeSet::new());
    let dist = at_level(&manifest, "dist", 3);
    let missing: Vec<_> = unoptimised.difference(&dist).collect();
    assert!(
        missing.is_empty(),
        "dist leaves these at release's opt-level 0: {missing:?}"
    );
}
