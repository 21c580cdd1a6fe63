//! Integration tests: each module runs the real `pipeline` binary against fixture checkpoints.
//! They are one test binary so that the big dependencies link once.

mod common;
mod demo;
mod hub;
mod inspect;
mod profiles;
mod run;
mod s3;
mod slurm;
mod sweep;
