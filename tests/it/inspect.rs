//! `pipeline inspect` on every fixture checkpoint and on bad input.

use crate::common::{arch_fixture, pipeline, text};

#[test]
fn inspect_shows_the_interleaved_neox_layout() {
    let dir = arch_fixture("gpt_neox");
    let out = pipeline(&["inspect", dir.to_str().unwrap(), "--check"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("arch        gpt_neox"), "{stdout}");
    assert!(stdout.contains("4 files"), "sharded fixture: {stdout}");
    assert!(
        stdout.contains("layers.0.attention.query_key_value.weight"),
        "{stdout}"
    );
    assert!(stdout.contains("[n_kv=3, 1+2, d_head=8]"), "{stdout}");
    assert!(stdout.contains("all 2 layers read"), "{stdout}");
}

#[test]
fn inspect_json_on_every_fixture() {
    let cases = std::fs::read_dir(crate::common::root().join("tests/fixtures/arch")).unwrap();
    let mut seen = 0;
    for case in cases {
        let dir = case.unwrap().path();
        let meta: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("meta.json")).unwrap()).unwrap();
        let out = pipeline(&["inspect", dir.to_str().unwrap(), "--json", "--check"]);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{}: {stderr}", dir.display());
        let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        for key in [
            "model_type",
            "n_layers",
            "d_model",
            "n_heads",
            "n_kv_heads",
            "d_head",
        ] {
            assert_eq!(doc[key], meta[key], "{}: {key}", dir.display());
        }
        assert_eq!(
            doc["pre_attention_norm"],
            meta["pre_norm"],
            "{}",
            dir.display()
        );
        let projections: Vec<&str> = doc["sources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["projection"].as_str().unwrap())
            .collect();
        for p in ["W_Q", "W_K", "W_V", "W_O"] {
            assert!(projections.contains(&p), "{}: {p} missing", dir.display());
        }
        seen += 1;
    }
    assert!(seen >= 18, "only {seen} fixtures");
}

#[test]
fn inspect_reports_bad_input_clearly() {
    let out = pipeline(&["inspect", "/nonexistent/model"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("/nonexistent/model does not exist"),
        "{stderr}"
    );

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), r#"{"model_type": "rwkv"}"#).unwrap();
    std::fs::copy(
        arch_fixture("gpt2").join("model.safetensors"),
        dir.path().join("model.safetensors"),
    )
    .unwrap();
    let out = pipeline(&["inspect", dir.path().to_str().unwrap()]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("unknown model_type `rwkv`") && stderr.contains("supported: gpt2"),
        "{stderr}"
    );

    // A truncated safetensors file: the header claims more bytes than the file has.
    std::fs::copy(
        arch_fixture("gpt2").join("config.json"),
        dir.path().join("config.json"),
    )
    .unwrap();
    let bytes = std::fs::read(arch_fixture("gpt2").join("model.safetensors")).unwrap();
    std::fs::write(
        dir.path().join("model.safetensors"),
        &bytes[..bytes.len() / 2],
    )
    .unwrap();
    let out = pipeline(&["inspect", dir.path().to_str().unwrap()]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("corrupt safetensors file") && stderr.contains("outside"),
        "{stderr}"
    );
}

#[test]
fn inspect_lists_every_architecture() {
    let out = pipeline(&["inspect", "--architectures"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    for t in attn_spectra::arch::spec::supported() {
        assert!(
            stdout
                .lines()
                .any(|l| l.split_whitespace().next() == Some(t)),
            "`{t}` not listed: {stdout}"
        );
    }
    assert!(stdout.contains("[GGUF `qwen3`]"), "{stdout}");
    let out = pipeline(&["inspect", "--architectures", "--json"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let rows: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        rows.as_array().unwrap().len(),
        attn_spectra::arch::spec::supported().len()
    );
}
