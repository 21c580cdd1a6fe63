//! The build profiles in Cargo.toml: the crates the dev profile optimises (the hot path) are the
//! crates the release profile optimises, so neither build route leaves a hot crate slow.

use std::collections::BTreeSet;

/// The packages a profile's `[profile.NAME.package.*]` tables set to `opt-level = 3`.
fn optimised(manifest: &toml::Table, profile: &str) -> BTreeSet<String> {
    let packages = manifest["profile"][profile]["package"]
        .as_table()
        .unwrap_or_else(|| panic!("Cargo.toml has no [profile.{profile}.package] tables"));
    packages
        .iter()
        .filter(|(name, _)| name.as_str() != "*")
        .filter(|(_, table)| table.get("opt-level").and_then(toml::Value::as_integer) == Some(3))
        .map(|(name, _)| name.clone())
        .collect()
}

#[test]
fn release_optimises_the_hot_crates_the_dev_profile_optimises() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")).unwrap();
    let manifest: toml::Table = text.parse().unwrap();
    let mut dev = optimised(&manifest, "dev");
    // The core crate is a workspace member: release builds it at the profile's own opt-level 3.
    assert!(
        dev.remove("attn-spectra"),
        "the dev profile no longer optimises the core crate"
    );
    assert_eq!(
        manifest["profile"]["release"].get("opt-level"),
        None,
        "release must stay at opt-level 3"
    );
    let release = optimised(&manifest, "release");
    assert!(
        dev.len() > 40,
        "the dev hot list shrank to {} crates",
        dev.len()
    );
    assert_eq!(
        dev.symmetric_difference(&release).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "crates optimised in one profile only; keep the dev and release lists in Cargo.toml the same"
    );
    // Everything else in release at opt-level 1 (issue 15's build time), and the wheel's dist
    // profile back at 3 for every crate.
    let star = |p: &str| {
        manifest["profile"][p]["package"]["*"]
            .get("opt-level")
            .and_then(toml::Value::as_integer)
    };
    assert_eq!(star("release"), Some(1));
    assert_eq!(star("dist"), Some(3));
}
