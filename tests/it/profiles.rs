//! The build profiles in Cargo.toml: the crates the dev profile optimises (the hot path) are the
//! crates the release profile optimises, so neither build route leaves a hot crate slow; the
//! crates release leaves unoptimised for its build time are optimised for size in the wheel's
//! `dist` profile, which keeps the hot crates at opt-level 3.

use std::collections::BTreeSet;

/// The packages a profile's `[profile.NAME.package.*]` tables set to `opt-level = level`
/// (an integer, or `"s"` / `"z"`).
fn at_level(
    manifest: &toml::Table,
    profile: &str,
    level: impl Into<toml::Value>,
) -> BTreeSet<String> {
    let level = level.into();
    let packages = manifest["profile"][profile]["package"]
        .as_table()
        .unwrap_or_else(|| panic!("Cargo.toml has no [profile.{profile}.package] tables"));
    packages
        .iter()
        .filter(|(name, _)| name.as_str() != "*")
        .filter(|(_, table)| table.get("opt-level") == Some(&level))
        .map(|(name, _)| name.clone())
        .collect()
}

#[test]
fn release_optimises_the_hot_crates_and_dist_optimises_for_size() {
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
    // The dev binary compiles the core crate (and faer's kernels instantiated in it) without
    // overflow checks or debug assertions, as release does; the crate's unit tests keep both
    // (crates/core/src/lib.rs checks that they are on there).
    let package = |profile: &str, key: &str| {
        manifest["profile"][profile]["package"]["attn-spectra"]
            .get(key)
            .and_then(toml::Value::as_bool)
    };
    for key in ["debug-assertions", "overflow-checks"] {
        assert_eq!(
            package("dev", key),
            Some(false),
            "dev: {key} in the core crate"
        );
        assert_eq!(
            package("test", key),
            Some(true),
            "test: {key} in the core crate"
        );
    }
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
    // Dist (the wheel, at most 60 MB): optimised for size, fat LTO, panics abort; the hot crates
    // keep release's opt-level 3 and every crate release leaves at 0 is put at "z" (custom
    // profiles inherit release's package overrides).
    let dist = &manifest["profile"]["dist"];
    assert_eq!(dist["inherits"].as_str(), Some("release"));
    assert_eq!(dist["opt-level"].as_str(), Some("z"));
    assert_eq!(dist["lto"].as_str(), Some("fat"));
    assert_eq!(dist["panic"].as_str(), Some("abort"));
    assert_eq!(dist["strip"].as_bool(), Some(true));
    assert_eq!(at_level(&manifest, "dist", 0), BTreeSet::new());
    assert_eq!(
        at_level(&manifest, "dist", 3),
        BTreeSet::new(),
        "dist keeps release's hot list"
    );
    let small = at_level(&manifest, "dist", "z");
    let missing: Vec<_> = unoptimised.difference(&small).collect();
    assert!(
        missing.is_empty(),
        "dist does not put these crates (release's opt-level 0) at \"z\": {missing:?}"
    );
}
