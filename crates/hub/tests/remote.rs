//! `Hub::open_remote` against the mock Hub: only the safetensors headers and the tensors read
//! are downloaded. Byte counts are checked against the served files' own layout.

mod common;

use attn_spectra::pipeline::ModelEntry;
use attn_spectra_hub::locate::locate_ahead;
use attn_spectra_hub::mock::{FaultKind, Origin, RecordedRequest};
use attn_spectra_hub::{HubError, Hubs, RemoteFile};
use common::*;

fn weight_requests<'a>(
    log: &'a [RecordedRequest],
    model: &str,
    file: &str,
) -> Vec<&'a RecordedRequest> {
    log.iter()
        .filter(|r| r.is_for(model, file) && r.status != 302)
        .collect()
}

#[test]
fn reading_one_tensor_downloads_the_header_and_that_tensor_only() {
    let env = env();
    let m = "org/remote";
    let served = put_single(&env, m, "main", 1.0);
    let file_len = std::fs::metadata(&served).unwrap().len();
    let n = header_len(&served);

    let hub = env.client();
    let remote = hub.open_remote(m, "main").unwrap();
    assert_eq!(remote.commit, env.hub.commit_of(m, "main").unwrap());
    assert_eq!(remote.config().model_type().unwrap(), "llama");
    assert_eq!(remote.weight_bytes(), file_len);
    assert_eq!(remote.bytes_downloaded(), 8 + n, "only the header at open");
    let ck = &remote.checkpoint;
    assert_eq!(ck.tensors().len(), 5);

    let k = ck.require("self_attn.k_proj.weight").unwrap();
    let m_k = ck.read_matrix(k).unwrap();
    assert_eq!((m_k.rows(), m_k.cols()), (8, 8));
    let expected: Vec<f64> = values(64, 101.0).iter().map(|&x| x as f64).collect();
    assert_eq!(ck.read(k).unwrap(), expected);

    let tensor_bytes = 64 * 4;
    let log = env.hub.requests();
    let reqs = weight_requests(&log, m, "model.safetensors");
    let ranges: Vec<(Option<&str>, u16, u64)> = reqs
        .iter()
        .map(|r| (r.range.as_deref(), r.status, r.body_bytes))
        .collect();
    // The K tensor follows Q (64 f32) in the data section.
    let k_start = 8 + n + 256;
    let k_range = format!("bytes={k_start}-{}", k_start + 255);
    assert_eq!(
        ranges,
        [
            (Some("bytes=0-7"), 206, 8),
            (Some(format!("bytes=8-{}", 8 + n - 1).as_str()), 206, n),
            (Some(k_range.as_str()), 206, tensor_bytes),
            (Some(k_range.as_str()), 206, tensor_bytes),
        ]
    );
    assert!(
        reqs.iter()
            .all(|r| r.origin == Origin::Cdn && r.method == "GET")
    );
    assert_eq!(remote.bytes_downloaded(), 8 + n + 2 * tensor_bytes);
    assert!(remote.bytes_downloaded() < file_len);
    assert_eq!(remote.traffic().requests(), 4);
    // config.json landed in the cache.
    let snap = env
        .cache
        .join("models--org--remote/snapshots")
        .join(&remote.commit);
    assert!(snap.join("config.json").is_file());
    assert!(!snap.join("model.safetensors").exists());
}

#[test]
fn sharded_remote_reads_touch_only_the_shard_holding_the_tensor() {
    let env = env();
    let m = "org/remote-sharded";
    env.put_config(m, "main");
    let s1 = env.put_safetensors(
        m,
        "main",
        "model-00001-of-00002.safetensors",
        &[(Q, values(64, 1.0), 8, 8)],
    );
    let s2 = env.put_safetensors(
        m,
        "main",
        "model-00002-of-00002.safetensors",
        &[(K, values(64, 2.0), 8, 8), (V, values(16, 3.0), 4, 4)],
    );
    let index = serde_json::json!({"weight_map": {
        Q: "model-00001-of-00002.safetensors", K: "model-00002-of-00002.safetensors", V: "model-00002-of-00002.safetensors"
    }});
    env.hub
        .put_file(
            m,
            "main",
            "model.safetensors.index.json",
            index.to_string().as_bytes(),
        )
        .unwrap();
    let (n1, n2) = (header_len(&s1), header_len(&s2));
    let total = std::fs::metadata(&s1).unwrap().len() + std::fs::metadata(&s2).unwrap().len();

    let remote = env.client().open_remote(m, "main").unwrap();
    assert_eq!(remote.weight_bytes(), total);
    // The files read, with the served bytes' sizes and sha256 (the shards' from their HEAD).
    let record = |f: &str| {
        let b = env.served_bytes(m, "main", f);
        RemoteFile {
            name: f.to_string(),
            size: b.len() as u64,
            sha256: Some(sha256(&b)),
        }
    };
    assert_eq!(
        remote.files,
        [
            record("config.json"),
            record("model.safetensors.index.json"),
            record("model-00001-of-00002.safetensors"),
            record("model-00002-of-00002.safetensors"),
        ]
    );
    let ck = &remote.checkpoint;
    let v = ck.require("self_attn.v_proj.weight").unwrap();
    assert_eq!(ck.read(v).unwrap()[..3], [3.0, 3.25, 3.5]);
    assert_eq!(remote.bytes_downloaded(), (8 + n1) + (8 + n2) + 16 * 4);
    let log = env.hub.requests();
    assert_eq!(
        weight_requests(&log, m, "model-00001-of-00002.safetensors").len(),
        2,
        "header only"
    );
    assert_eq!(
        weight_requests(&log, m, "model-00002-of-00002.safetensors").len(),
        3
    );
}

#[test]
fn remote_store_is_send_sync_and_rejects_non_safetensors() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<attn_spectra_hub::RemoteSafetensorsStore>();

    let env = env();
    let m = "org/remote-bin";
    env.put_config(m, "main");
    env.hub
        .put_file(m, "main", "pytorch_model.bin", &[0; 64])
        .unwrap();
    let e = env.client().open_remote(m, "main").unwrap_err();
    assert!(matches!(e, HubError::RemoteUnsupported { .. }), "{e}");
    assert!(e.to_string().contains("pytorch_model.bin"), "{e}");
}

#[test]
fn a_corrupt_remote_header_is_an_error_naming_the_file() {
    let env = env();
    let m = "org/remote-bad";
    env.put_config(m, "main");
    let mut bytes = 1_000_000u64.to_le_bytes().to_vec();
    bytes.extend_from_slice(b"{}");
    env.hub
        .put_file(m, "main", "model.safetensors", &bytes)
        .unwrap();
    let e = env.client().open_remote(m, "main").unwrap_err().to_string();
    assert!(
        e.contains("model.safetensors") && e.contains("past the end"),
        "{e}"
    );
}

#[test]
fn remote_reads_work_from_threads_and_inside_a_tokio_runtime() {
    let env = env();
    let m = "org/remote-threads";
    put_single(&env, m, "main", 1.0);
    let remote = env.client().open_remote(m, "main").unwrap();
    let ck = &remote.checkpoint;
    let names = [Q, K, V, O];
    std::thread::scope(|s| {
        for (i, name) in names.iter().enumerate() {
            s.spawn(move || {
                let t = ck.require(name).unwrap();
                assert_eq!(ck.read(t).unwrap()[0], 1.0 + 100.0 * i as f64);
            });
        }
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let t = ck.require(O).unwrap();
        assert_eq!(ck.read(t).unwrap()[0], 301.0);
    });
}

#[test]
fn a_prefetch_hint_merges_near_ranges_into_one_request_with_the_same_bytes() {
    let env = env();
    let m = "org/remote-prefetch";
    put_single(&env, m, "main", 1.0);
    // Without hints: one request per tensor.
    let plain = env.client().open_remote(m, "main").unwrap();
    let ck = &plain.checkpoint;
    let names = [Q, K, V, O];
    let expected: Vec<Vec<f64>> = names
        .iter()
        .map(|n| ck.read(ck.require(n).unwrap()).unwrap())
        .collect();
    assert_eq!(plain.traffic().requests(), 2 + 4);

    // With a hint for Q, K, V, O (adjacent in the file): one merged request, same bytes.
    let hinted = env.client().open_remote(m, "main").unwrap();
    let ck = &hinted.checkpoint;
    let metas: Vec<_> = names.iter().map(|n| ck.require(n).unwrap()).collect();
    ck.prefetch(&metas);
    let got: Vec<Vec<f64>> = metas.iter().map(|t| ck.read(t).unwrap()).collect();
    assert_eq!(got, expected);
    assert_eq!(hinted.traffic().requests(), 2 + 1);
    let served = env.served(m, "main", "model.safetensors");
    let n = header_len(&served);
    // The four tensors (64 f32 each) and nothing of the MLP matrix after them.
    assert_eq!(hinted.bytes_downloaded(), 8 + n + 4 * 256);
    let log = env.hub.requests();
    let data = format!("bytes={}-{}", 8 + n, 8 + n + 4 * 256 - 1);
    let merged: Vec<_> = weight_requests(&log, m, "model.safetensors")
        .into_iter()
        .filter(|r| r.range.as_deref() == Some(data.as_str()))
        .collect();
    assert_eq!(merged.len(), 1, "{log:?}");

    // A tensor read again (no longer hinted) is requested alone; a new hint drops what an
    // earlier one fetched and nobody read.
    assert_eq!(ck.read(metas[0]).unwrap(), expected[0]);
    assert_eq!(hinted.traffic().requests(), 2 + 2);
    ck.prefetch(&[metas[1], metas[2]]);
    assert_eq!(ck.read(metas[1]).unwrap(), expected[1]);
    assert_eq!(hinted.traffic().requests(), 2 + 3, "K and V in one request");
    ck.prefetch(&[metas[3]]);
    assert_eq!(ck.read(metas[3]).unwrap(), expected[3]);
    assert_eq!(hinted.traffic().requests(), 2 + 4);
    // V was fetched with K but dropped by the hint for O: read now, it is requested again.
    assert_eq!(ck.read(metas[2]).unwrap(), expected[2]);
    assert_eq!(hinted.traffic().requests(), 2 + 5);
}

#[test]
fn a_failed_prefetch_is_an_error_naming_the_tensor() {
    let env = env();
    let m = "org/remote-prefetch-gone";
    put_single(&env, m, "main", 1.0);
    let remote = env.client().open_remote(m, "main").unwrap();
    let ck = &remote.checkpoint;
    let k = ck.require(K).unwrap();
    // The file's bytes are refused after the header was read: the hinted request fails.
    env.hub
        .inject(m, "model.safetensors", FaultKind::Status(404), 1);
    ck.prefetch(&[k]);
    let e = ck.read(k).unwrap_err().to_string();
    assert!(e.contains(K) && e.contains("model.safetensors"), "{e}");
}

fn hub_entry(id: &str) -> ModelEntry {
    ModelEntry {
        id: id.to_string(),
        revision: "main".to_string(),
        source: None,
        gguf: None,
        lab: None,
        heritage: None,
        color: None,
        marker: None,
    }
}

#[test]
fn the_next_model_is_located_and_its_first_layers_downloaded_while_the_caller_holds_the_current_one()
 {
    let env = env();
    let (a, b) = ("org/ahead-a", "org/ahead-b");
    put_single(&env, a, "main", 1.0);
    put_single(&env, b, "main", 2.0);
    let entries = [hub_entry(a), hub_entry(b)];
    // Layer 0 of a model: Q, K, V and O, adjacent in the data section, in one merged request.
    let layer0 = |m: &str| {
        let n = header_len(&env.served(m, "main", "model.safetensors"));
        format!("bytes={}-{}", 8 + n, 8 + n + 4 * 256 - 1)
    };
    let (a_layer0, b_layer0) = (layer0(a), layer0(b));
    std::thread::scope(|scope| {
        let rx = locate_ahead(
            scope,
            Hubs::with_hub(env.client()),
            entries.iter().collect(),
            true,
        );
        let first = rx.recv().unwrap().unwrap();
        // The caller holds `a` (as if computing it) and asks for nothing: b's headers and its
        // first layer (the model has one) arrive anyway.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let seen = |log: &[RecordedRequest], m: &str, range: &str| {
            weight_requests(log, m, "model.safetensors")
                .iter()
                .any(|r| r.range.as_deref() == Some(range) && r.status == 206)
        };
        while !(seen(&env.hub.requests(), b, &b_layer0) && seen(&env.hub.requests(), a, &a_layer0))
        {
            assert!(
                std::time::Instant::now() < deadline,
                "b's first layer was never requested: {:?}",
                env.hub.requests()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        // Of a, too, only its headers and its layer (hinted when it was located).
        let log = env.hub.requests();
        let a_ranges: Vec<_> = weight_requests(&log, a, "model.safetensors")
            .iter()
            .map(|r| r.range.clone().unwrap_or_default())
            .collect();
        let n_a = header_len(&env.served(a, "main", "model.safetensors"));
        let a_layer0 = format!("bytes={}-{}", 8 + n_a, 8 + n_a + 4 * 256 - 1);
        assert_eq!(
            a_ranges,
            [
                "bytes=0-7".to_string(),
                format!("bytes=8-{}", 8 + n_a - 1),
                a_layer0
            ]
        );
        drop(first);

        let second = rx.recv().unwrap().unwrap();
        let traffic = second.remote.clone().unwrap();
        let before = traffic.requests();
        let ck = &second.ckpt;
        for (name, seed) in [(Q, 2.0), (K, 102.0), (V, 202.0), (O, 302.0)] {
            let expected: Vec<f64> = values(64, seed).iter().map(|&x| x as f64).collect();
            assert_eq!(
                ck.read(ck.require(name).unwrap()).unwrap(),
                expected,
                "{name}"
            );
        }
        assert_eq!(traffic.requests(), before, "layer 0 was already downloaded");
        assert!(
            rx.recv().is_err(),
            "one result per model, then the thread ends"
        );
    });
}
