//! `Hub::fetch` against the mock Hub: file choice, cache layout, revisions, faults, gating,
//! offline use and identical revisions. Expected bytes and hashes come from the served files
//! themselves, never from the code under test.

mod common;

use std::time::Duration;

use attn_spectra::Checkpoint;
use attn_spectra_hub::mock::{FaultKind, Origin, RecordedRequest};
use attn_spectra_hub::{Hub, HubError, Want};
use common::*;

fn content_gets<'a>(
    log: &'a [RecordedRequest],
    model: &str,
    file: &str,
) -> Vec<&'a RecordedRequest> {
    log.iter()
        .filter(|r| r.method == "GET" && r.is_for(model, file) && r.status != 302)
        .collect()
}

#[test]
fn single_file_safetensors_lands_in_the_hf_cache_layout() {
    let env = env();
    let m = "org/single";
    put_single(&env, m, "main", 1.0);
    // Files that must not be downloaded.
    env.hub
        .put_file(m, "main", "README.md", b"# readme")
        .unwrap();
    env.hub
        .put_file(m, "main", "flax_model.msgpack", &[7; 300])
        .unwrap();
    env.hub
        .put_file(m, "main", "tokenizer.json", b"{}")
        .unwrap();

    let hub = env.client();
    let got = hub.fetch(m, "main", Want::Auto).unwrap();
    let commit = env.hub.commit_of(m, "main").unwrap();
    assert_eq!(got.commit, commit);
    let repo = env.cache.join("models--org--single");
    assert_eq!(got.dir, repo.join("snapshots").join(&commit));
    assert_eq!(
        std::fs::read_to_string(repo.join("refs/main")).unwrap(),
        commit
    );
    let names: Vec<&str> = got.files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["config.json", "model.safetensors"]);

    let served = env.served_bytes(m, "main", "model.safetensors");
    let sha = sha256(&served);
    let rec = &got.files[1];
    assert_eq!(
        (rec.size, rec.sha256.as_str(), rec.etag.as_str()),
        (served.len() as u64, sha.as_str(), sha.as_str())
    );
    let link = std::fs::read_link(got.path("model.safetensors")).unwrap();
    assert_eq!(link, std::path::PathBuf::from(format!("../../blobs/{sha}")));
    assert_eq!(
        std::fs::read(got.path("model.safetensors")).unwrap(),
        served
    );
    let cfg = env.served_bytes(m, "main", "config.json");
    assert_eq!(got.files[0].sha256, sha256(&cfg));
    assert_eq!(got.bytes_downloaded, (served.len() + cfg.len()) as u64);
    assert_eq!(got.identical_to, None);

    // The snapshot opens as a checkpoint and reads back what was written.
    let ck = Checkpoint::open(&got.dir).unwrap();
    let q = ck.require("self_attn.q_proj.weight").unwrap();
    let expected: Vec<f64> = values(64, 1.0).iter().map(|&x| x as f64).collect();
    assert_eq!(ck.read(q).unwrap(), expected);

    let log = env.hub.requests();
    for f in ["README.md", "flax_model.msgpack", "tokenizer.json"] {
        assert!(!log.iter().any(|r| r.is_for(m, f)), "{f} was requested");
    }
    assert!(!log.iter().any(|r| r.path.contains(".incomplete")));

    // A second fetch is answered from the cache.
    env.hub.clear_requests();
    let again = hub.fetch(m, "main", Want::Auto).unwrap();
    assert_eq!(again.bytes_downloaded, 0);
    assert_eq!(again.files, got.files);
    assert!(content_gets(&env.hub.requests(), m, "model.safetensors").is_empty());
}

#[test]
fn sharded_safetensors_fetch_the_index_and_every_shard() {
    let env = env();
    let m = "org/sharded";
    env.put_config(m, "main");
    env.put_safetensors(
        m,
        "main",
        "model-00001-of-00002.safetensors",
        &[(Q, values(64, 1.0), 8, 8), (K, values(64, 2.0), 8, 8)],
    );
    env.put_safetensors(
        m,
        "main",
        "model-00002-of-00002.safetensors",
        &[(V, values(64, 3.0), 8, 8), (O, values(64, 4.0), 8, 8)],
    );
    let index = serde_json::json!({
        "metadata": {"total_size": 1024},
        "weight_map": {
            Q: "model-00001-of-00002.safetensors", K: "model-00001-of-00002.safetensors",
            V: "model-00002-of-00002.safetensors", O: "model-00002-of-00002.safetensors",
        }
    });
    env.hub
        .put_file(
            m,
            "main",
            "model.safetensors.index.json",
            index.to_string().as_bytes(),
        )
        .unwrap();
    // A stale single-file copy in another folder must not be fetched.
    env.hub
        .put_file(m, "main", "onnx/model.onnx", &[1; 64])
        .unwrap();

    let got = env.client().fetch(m, "main", Want::Auto).unwrap();
    let names: Vec<&str> = got.files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "config.json",
            "model.safetensors.index.json",
            "model-00001-of-00002.safetensors",
            "model-00002-of-00002.safetensors"
        ]
    );
    for f in &got.files {
        assert_eq!(
            std::fs::read(got.path(&f.name)).unwrap(),
            env.served_bytes(m, "main", &f.name),
            "{}",
            f.name
        );
    }
    let ck = Checkpoint::open(&got.dir).unwrap();
    assert_eq!(ck.files().len(), 2);
    let o = ck.require("self_attn.o_proj.weight").unwrap();
    assert_eq!(ck.read(o).unwrap()[..2], [4.0, 4.25]);
    assert!(
        !env.hub
            .requests()
            .iter()
            .any(|r| r.path.ends_with("model.onnx"))
    );
}

#[test]
fn pytorch_bin_single_and_sharded() {
    let env = env();
    let m = "org/bin";
    env.put_config(m, "main");
    env.hub
        .put_file(m, "main", "pytorch_model.bin", &[9u8; 777])
        .unwrap();
    env.hub
        .put_file(m, "main", "tf_model.h5", &[1u8; 99])
        .unwrap();
    let got = env.client().fetch(m, "main", Want::Auto).unwrap();
    let names: Vec<&str> = got.files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["config.json", "pytorch_model.bin"]);
    assert_eq!(got.files[1].sha256, sha256(&[9u8; 777]));
    assert!(
        !env.hub
            .requests()
            .iter()
            .any(|r| r.path.ends_with("tf_model.h5"))
    );

    let m = "org/bin-sharded";
    env.put_config(m, "main");
    env.hub
        .put_file(m, "main", "pytorch_model-00001-of-00002.bin", &[1u8; 100])
        .unwrap();
    env.hub
        .put_file(m, "main", "pytorch_model-00002-of-00002.bin", &[2u8; 200])
        .unwrap();
    let index = serde_json::json!({"weight_map": {
        "a": "pytorch_model-00001-of-00002.bin", "b": "pytorch_model-00002-of-00002.bin", "c": "pytorch_model-00002-of-00002.bin"
    }});
    env.hub
        .put_file(
            m,
            "main",
            "pytorch_model.bin.index.json",
            index.to_string().as_bytes(),
        )
        .unwrap();
    let got = env.client().fetch(m, "main", Want::Auto).unwrap();
    let names: Vec<&str> = got.files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "config.json",
            "pytorch_model.bin.index.json",
            "pytorch_model-00001-of-00002.bin",
            "pytorch_model-00002-of-00002.bin"
        ]
    );
    assert_eq!(got.files[3].size, 200);
}

#[test]
fn without_a_file_listing_the_weights_are_found_by_trying_in_order() {
    let env = env();
    env.hub.list_siblings(false);
    let m = "org/unlisted";
    env.put_config(m, "main");
    env.hub
        .put_file(m, "main", "pytorch_model.bin", &[5u8; 321])
        .unwrap();
    let got = env.client().fetch(m, "main", Want::Auto).unwrap();
    let names: Vec<&str> = got.files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["config.json", "pytorch_model.bin"]);
    assert_eq!(got.files[1].sha256, sha256(&[5u8; 321]));
    let log = env.hub.requests();
    let probes: Vec<(&str, u16)> = log
        .iter()
        .filter(|r| {
            r.method == "HEAD" && r.origin == Origin::Hub && !r.path.ends_with("config.json")
        })
        .map(|r| (r.path.rsplit('/').next().unwrap(), r.status))
        .collect();
    assert_eq!(
        probes[..3],
        [
            ("model.safetensors", 404),
            ("model.safetensors.index.json", 404),
            ("pytorch_model.bin", 302)
        ]
    );

    let g = "org/unlisted-gguf";
    env.hub
        .put_file(g, "main", "m.gguf", b"GGUF-bytes")
        .unwrap();
    let got = env
        .client()
        .fetch(g, "main", Want::Gguf("m.gguf".into()))
        .unwrap();
    let names: Vec<&str> = got.files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["m.gguf"]);
}

#[test]
fn gguf_fetches_only_the_named_file() {
    let env = env();
    let m = "org/gguf";
    env.hub
        .put_file(
            m,
            "main",
            "tiny-Q8_0.gguf",
            b"GGUF\x03\x00\x00\x00rest-of-q8",
        )
        .unwrap();
    env.hub
        .put_file(
            m,
            "main",
            "tiny-F16.gguf",
            b"GGUF\x03\x00\x00\x00rest-of-f16",
        )
        .unwrap();
    let hub = env.client();
    let got = hub
        .fetch(m, "main", Want::Gguf("tiny-Q8_0.gguf".into()))
        .unwrap();
    let names: Vec<&str> = got.files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        ["tiny-Q8_0.gguf"],
        "no config.json in this repo, and it is optional"
    );
    assert_eq!(
        std::fs::read(got.path("tiny-Q8_0.gguf")).unwrap(),
        b"GGUF\x03\x00\x00\x00rest-of-q8"
    );
    assert!(
        !env.hub
            .requests()
            .iter()
            .any(|r| r.path.ends_with("tiny-F16.gguf"))
    );

    env.put_config(m, "main");
    let got = hub
        .fetch(m, "main", Want::Gguf("tiny-F16.gguf".into()))
        .unwrap();
    let names: Vec<&str> = got.files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["config.json", "tiny-F16.gguf"]);

    let e = hub
        .fetch(m, "main", Want::Gguf("nope.gguf".into()))
        .unwrap_err();
    assert!(matches!(e, HubError::FileNotFound { .. }), "{e}");
    assert!(e.to_string().contains("nope.gguf"), "{e}");
    let e = hub
        .fetch(m, "main", Want::Gguf("../x.gguf".into()))
        .unwrap_err();
    assert!(matches!(e, HubError::BadFileName { .. }), "{e}");
}

#[test]
fn revision_branches_tags_and_shas_resolve_to_their_commits() {
    let env = env();
    let m = "EleutherAI/pythia-mock";
    put_single(&env, m, "main", 1.0);
    put_single(&env, m, "step1000", 5.0);
    let hub = env.client();
    let got = hub.fetch(m, "step1000", Want::Auto).unwrap();
    let commit = env.hub.commit_of(m, "step1000").unwrap();
    assert_eq!(got.commit, commit);
    assert_ne!(commit, env.hub.commit_of(m, "main").unwrap());
    let repo = env.cache.join("models--EleutherAI--pythia-mock");
    assert_eq!(
        std::fs::read_to_string(repo.join("refs/step1000")).unwrap(),
        commit
    );
    assert_eq!(
        std::fs::read(got.path("model.safetensors")).unwrap(),
        env.served_bytes(m, "step1000", "model.safetensors")
    );
    let ck = Checkpoint::open(&got.dir).unwrap();
    assert_eq!(
        ck.read(ck.require("q_proj.weight").unwrap()).unwrap()[0],
        5.0
    );

    // By sha: same snapshot, no ref named after the sha.
    let main_sha = env.hub.commit_of(m, "main").unwrap();
    let by_sha = hub.fetch(m, &main_sha, Want::Auto).unwrap();
    assert_eq!(by_sha.commit, main_sha);
    assert!(!repo.join("refs").join(&main_sha).exists());

    let e = hub.fetch(m, "step999", Want::Auto).unwrap_err();
    assert!(matches!(e, HubError::RevisionNotFound { .. }), "{e}");
    assert!(e.to_string().contains("step999"), "{e}");
    let e = hub
        .fetch("org/nothing-here", "main", Want::Auto)
        .unwrap_err();
    assert!(matches!(e, HubError::ModelNotFound { .. }), "{e}");
    assert!(e.to_string().contains("check the model id"), "{e}");
}

#[test]
fn no_weights_is_an_error_listing_what_is_there() {
    let env = env();
    let m = "org/empty";
    env.put_config(m, "main");
    env.hub.put_file(m, "main", "model.onnx", &[0; 10]).unwrap();
    let e = env.client().fetch(m, "main", Want::Auto).unwrap_err();
    assert!(matches!(e, HubError::NoWeights { .. }), "{e}");
    assert!(e.to_string().contains("model.safetensors"), "{e}");
}

#[test]
fn a_503_on_the_first_try_is_retried() {
    let env = env();
    let m = "org/flaky";
    put_single(&env, m, "main", 1.0);
    env.hub
        .inject(m, "model.safetensors", FaultKind::Status(503), 1);
    env.hub
        .inject(m, "config.json", FaultKind::HeadStatus(503), 1);
    let got = env.client().fetch(m, "main", Want::Auto).unwrap();
    let served = env.served_bytes(m, "main", "model.safetensors");
    assert_eq!(got.files[1].sha256, sha256(&served));
    let log = env.hub.requests();
    let gets = content_gets(&log, m, "model.safetensors");
    let statuses: Vec<u16> = gets.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [503, 200]);
    assert!(
        log.iter()
            .any(|r| r.method == "HEAD" && r.is_for(m, "config.json") && r.status == 503)
    );
}

#[test]
fn an_error_page_stored_as_the_blob_is_caught_and_replaced() {
    // Error pages (503 bodies) must never be stored as the blob: each one is retried and the
    // file that lands is the served one.
    let env = env();
    let m = "org/gap";
    put_single(&env, m, "main", 1.0);
    let mut opts = env.opts();
    opts.max_attempts = 5;
    env.hub
        .inject(m, "model.safetensors", FaultKind::Status(503), 4);
    let got = Hub::new(opts)
        .unwrap()
        .fetch(m, "main", Want::Auto)
        .unwrap();
    let served = env.served_bytes(m, "main", "model.safetensors");
    assert_eq!(
        std::fs::read(got.path("model.safetensors")).unwrap(),
        served
    );
    let log = env.hub.requests();
    let gets = content_gets(&log, m, "model.safetensors");
    let statuses: Vec<u16> = gets.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [503, 503, 503, 503, 200]);
}

#[test]
fn a_connection_dropped_mid_file_is_resumed_with_a_range_request() {
    let env = env();
    let m = "org/dropped";
    env.put_config(m, "main");
    env.put_safetensors(
        m,
        "main",
        "model.safetensors",
        &[(Q, values(4096, 1.0), 64, 64)],
    );
    let served = env.served_bytes(m, "main", "model.safetensors");
    env.hub
        .inject(m, "model.safetensors", FaultKind::DropAfter(5000), 1);
    let got = env.client().fetch(m, "main", Want::Auto).unwrap();
    assert_eq!(got.files[1].sha256, sha256(&served));
    assert_eq!(
        std::fs::read(got.path("model.safetensors")).unwrap(),
        served
    );

    let log = env.hub.requests();
    let gets = content_gets(&log, m, "model.safetensors");
    assert_eq!(gets.len(), 2, "{gets:?}");
    assert_eq!(
        (gets[0].status, gets[0].body_bytes, gets[0].range.as_deref()),
        (200, 5000, None)
    );
    assert_eq!(gets[1].status, 206);
    assert_eq!(gets[1].range.as_deref(), Some("bytes=5000-"));
    assert_eq!(gets[1].body_bytes, served.len() as u64 - 5000);
    assert_eq!(
        got.bytes_downloaded,
        served.len() as u64 + got.files[0].size
    );
    let blobs = env.cache.join("models--org--dropped/blobs");
    let left: Vec<_> = std::fs::read_dir(blobs)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(
        !left
            .iter()
            .any(|n| n.to_string_lossy().ends_with(".incomplete")),
        "{left:?}"
    );
}

#[test]
fn a_partial_file_from_an_earlier_run_is_resumed() {
    let env = env();
    let m = "org/partial";
    put_single(&env, m, "main", 1.0);
    let served = env.served_bytes(m, "main", "model.safetensors");
    let sha = sha256(&served);
    let blobs = env.cache.join("models--org--partial/blobs");
    std::fs::create_dir_all(&blobs).unwrap();
    std::fs::write(blobs.join(format!("{sha}.incomplete")), &served[..1000]).unwrap();
    let got = env.client().fetch(m, "main", Want::Auto).unwrap();
    assert_eq!(
        std::fs::read(got.path("model.safetensors")).unwrap(),
        served
    );
    let log = env.hub.requests();
    let gets = content_gets(&log, m, "model.safetensors");
    assert_eq!(gets.len(), 1, "{gets:?}");
    assert_eq!(gets[0].range.as_deref(), Some("bytes=1000-"));
    assert_eq!(gets[0].body_bytes, served.len() as u64 - 1000);
}

#[test]
fn corrupt_bytes_end_in_a_checksum_error_naming_both_hashes() {
    let env = env();
    let m = "org/corrupt";
    put_single(&env, m, "main", 1.0);
    env.hub
        .inject(m, "model.safetensors", FaultKind::Corrupt, 100);
    let e = env.client().fetch(m, "main", Want::Auto).unwrap_err();
    let served = env.served_bytes(m, "main", "model.safetensors");
    let mut flipped = served.clone();
    flipped[0] ^= 0xff;
    let s = e.to_string();
    assert!(matches!(e, HubError::ChecksumMismatch { .. }), "{s}");
    assert!(s.contains("model.safetensors"), "{s}");
    assert!(
        s.contains(&sha256(&served)) && s.contains(&sha256(&flipped)),
        "{s}"
    );
    assert!(
        !env.cache
            .join("models--org--corrupt/snapshots")
            .join(env.hub.commit_of(m, "main").unwrap())
            .join("model.safetensors")
            .exists()
    );
}

#[test]
fn a_body_longer_than_announced_is_cut_off_at_the_announced_size() {
    let env = env();
    let m = "org/oversize";
    put_single(&env, m, "main", 1.0);
    let size = env.served_bytes(m, "main", "model.safetensors").len();
    env.hub
        .inject(m, "model.safetensors", FaultKind::Oversize(1 << 20), 100);
    let e = env.client().fetch(m, "main", Want::Auto).unwrap_err();
    let s = e.to_string();
    assert!(matches!(e, HubError::Malformed { .. }), "{s}");
    assert!(
        s.contains("model.safetensors")
            && s.contains(&format!("more than the {size} bytes its HEAD announced")),
        "{s}"
    );
    // Nothing past the announced size reached the disk.
    let blobs = env.cache.join("models--org--oversize/blobs");
    for f in std::fs::read_dir(&blobs).unwrap() {
        let f = f.unwrap().path();
        assert!(
            std::fs::metadata(&f).unwrap().len() <= size as u64,
            "{}",
            f.display()
        );
    }
}

#[test]
fn a_stalled_response_times_out_and_is_retried() {
    let env = env();
    let m = "org/stall";
    put_single(&env, m, "main", 1.0);
    env.hub.inject(
        m,
        "model.safetensors",
        FaultKind::Stall(Duration::from_millis(1500)),
        1,
    );
    let mut opts = env.opts();
    opts.read_timeout = Duration::from_millis(300);
    let got = Hub::new(opts)
        .unwrap()
        .fetch(m, "main", Want::Auto)
        .unwrap();
    let served = env.served_bytes(m, "main", "model.safetensors");
    assert_eq!(got.files[1].sha256, sha256(&served));
    assert!(content_gets(&env.hub.requests(), m, "model.safetensors").len() >= 2);
}

#[test]
fn gated_repos_need_the_token_which_never_reaches_the_cdn() {
    let env = env();
    let m = "org/gated";
    put_single(&env, m, "main", 1.0);
    let token = "hf_mockTokenValue123";
    env.hub.gate(m, token);

    let e = env.client().fetch(m, "main", Want::Auto).unwrap_err();
    let s = e.to_string();
    assert!(matches!(e, HubError::Gated { status: 401, .. }), "{s}");
    assert!(
        s.contains("gated") && s.contains("set HF_TOKEN") && s.contains(m),
        "{s}"
    );

    let mut wrong = env.opts();
    wrong.token = Some("hf_wrongTokenValue".into());
    let e = Hub::new(wrong)
        .unwrap()
        .fetch(m, "main", Want::Auto)
        .unwrap_err();
    let s = e.to_string();
    assert!(matches!(e, HubError::Gated { status: 403, .. }), "{s}");
    assert!(!s.contains("hf_wrongTokenValue"), "{s}");
    assert!(s.contains("refused"), "{s}");

    env.hub.clear_requests();
    let mut opts = env.opts();
    opts.token = Some(token.into());
    assert!(!format!("{opts:?}").contains(token));
    let hub = Hub::new(opts).unwrap();
    assert!(!format!("{hub:?}").contains(token));
    let got = hub.fetch(m, "main", Want::Auto).unwrap();
    assert_eq!(
        std::fs::read(got.path("model.safetensors")).unwrap(),
        env.served_bytes(m, "main", "model.safetensors")
    );
    let log = env.hub.requests();
    let bearer = format!("Bearer {token}");
    let cdn: Vec<_> = log.iter().filter(|r| r.origin == Origin::Cdn).collect();
    assert!(!cdn.is_empty());
    for r in &log {
        match r.origin {
            Origin::Hub => assert_eq!(r.authorization.as_deref(), Some(bearer.as_str()), "{r:?}"),
            Origin::Cdn => assert_eq!(r.authorization, None, "token sent to the CDN: {r:?}"),
        }
    }
}

#[test]
fn offline_uses_the_cache_only() {
    let env = env();
    let m = "org/offline";
    put_single(&env, m, "main", 1.0);
    put_single(&env, m, "step1000", 2.0);
    let online = env.client().fetch(m, "main", Want::Auto).unwrap();

    env.hub.clear_requests();
    let mut opts = env.opts();
    opts.offline = true;
    let hub = Hub::new(opts).unwrap();
    let got = hub.fetch(m, "main", Want::Auto).unwrap();
    assert_eq!(got.commit, online.commit);
    assert_eq!(got.files, online.files);
    assert_eq!(got.bytes_downloaded, 0);
    let by_sha = hub.fetch(m, &online.commit, Want::Auto).unwrap();
    assert_eq!(by_sha.dir, online.dir);

    let e = hub.fetch(m, "step1000", Want::Auto).unwrap_err();
    let s = e.to_string();
    assert!(matches!(e, HubError::RevisionNotCached { .. }), "{s}");
    for part in [
        m,
        "step1000",
        "not cached",
        "HF_HUB_OFFLINE",
        "pipeline run fetch",
    ] {
        assert!(s.contains(part), "{part} missing from {s}");
    }
    let e = hub
        .fetch(m, "main", Want::Gguf("model.gguf".into()))
        .unwrap_err();
    let s = e.to_string();
    assert!(matches!(e, HubError::NotCached { .. }), "{s}");
    for part in [m, "main", "model.gguf", "not cached", "HF_HUB_OFFLINE"] {
        assert!(s.contains(part), "{part} missing from {s}");
    }
    assert!(
        env.hub.requests().is_empty(),
        "offline mode sent {:?}",
        env.hub.requests()
    );
    let e = hub.open_remote(m, "main").unwrap_err();
    assert!(matches!(e, HubError::OfflineRemote { .. }), "{e}");
}

#[test]
fn a_branch_serving_the_same_files_is_flagged_identical() {
    let env = env();
    let m = "EleutherAI/pythia-steps";
    put_single(&env, m, "main", 1.0);
    put_single(&env, m, "step143000", 1.0);
    put_single(&env, m, "step1000", 3.0);
    let hub = env.client();
    let main = hub.fetch(m, "main", Want::Auto).unwrap();
    assert_eq!(main.identical_to, None);
    let step = hub.fetch(m, "step143000", Want::Auto).unwrap();
    assert_ne!(step.commit, main.commit);
    assert_eq!(step.identical_to.as_deref(), Some("main"));
    assert_eq!(step.bytes_downloaded, 0, "the blobs are shared with main");
    let other = hub.fetch(m, "step1000", Want::Auto).unwrap();
    assert_eq!(other.identical_to, None);
    // Asked again, main now has a twin too.
    assert_eq!(
        hub.fetch(m, "main", Want::Auto)
            .unwrap()
            .identical_to
            .as_deref(),
        Some("step143000")
    );
}

#[test]
fn a_hub_that_refuses_connections_ends_the_fetch_at_once_with_a_hint() {
    // A port nothing listens on: the connection is refused. Retrying cannot help, so the
    // error is the final `Unreachable` (not "failed after N attempts"), naming the host and
    // what to do.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dir = tempfile::tempdir().unwrap();
    let mut opts =
        attn_spectra_hub::HubOptions::new(format!("http://127.0.0.1:{port}"), dir.path());
    opts.progress = false;
    opts.max_attempts = 5;
    opts.retry_base_delay = Duration::from_millis(10);
    let err = Hub::new(opts)
        .unwrap()
        .fetch("org/model", "main", Want::Auto)
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, HubError::Unreachable { .. }), "{err:?}");
    assert!(
        msg.contains(&format!("cannot reach http://127.0.0.1:{port}")),
        "{msg}"
    );
    assert!(msg.to_lowercase().contains("refused"), "{msg}");
    for hint in ["HF_ENDPOINT", "--offline", "HTTPS_PROXY"] {
        assert!(msg.contains(hint), "{hint} missing: {msg}");
    }
    assert!(!msg.contains("attempts"), "{msg}");
}
