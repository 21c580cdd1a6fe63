//! Integration tests: each module runs the real `pipeline` binary against fixture checkpoints.
