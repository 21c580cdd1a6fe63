//! Shards: which units of a pipeline one process of a sweep takes (`--shard K/N`, `--shard
//! auto`).
//!
//! A pipeline's units are its (model, revision) pairs in file order
//! ([`Pipeline::models`](crate::pipeline::Pipeline::models)); unit *i* belongs to shard
//! `i mod N`. Shards are numbered from 0, so shard K of N takes units K, K+N, K+2N, ...
//! The assignment depends only on the units' order in the file: as long as the file does not
//! change, every run of shard K takes the same units, and the N shards together take every
//! unit exactly once. Round-robin spreads each model's revisions (and so the sizes) over all
//! shards.
//!
//! `--shard auto` reads the scheduler's environment:
//! - Slurm job arrays: `SLURM_ARRAY_TASK_ID`, with the count from `SLURM_ARRAY_TASK_COUNT`,
//!   else `SLURM_ARRAY_TASK_MAX - SLURM_ARRAY_TASK_MIN + 1`; K = ID - MIN (MIN defaults to 0).
//!   The array must be a contiguous range (`--array=0-15%4`, `--array=1-16`), no step.
//! - Kubernetes Indexed Jobs: `JOB_COMPLETION_INDEX` (set by Kubernetes), with the count in
//!   [`K8S_COUNT_VAR`], which the manifest sets to the Job's `completions`.

use std::fmt;

/// The variable a Kubernetes Indexed Job's manifest sets to its `completions` (Kubernetes
/// itself passes only the index).
pub const K8S_COUNT_VAR: &str = "ATTN_SPECTRA_SHARD_COUNT";

/// One shard: index `k` of `n` (0 <= k < n).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub k: usize,
    pub n: usize,
}

/// A `--shard` value that cannot be used; every variant is a usage error.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ShardError {
    #[error("`--shard {0}`: expected K/N with 0 <= K < N (shards are numbered from 0), or `auto`")]
    Syntax(String),
    #[error("`--shard {k}/{n}`: {problem}")]
    Range { k: usize, n: usize, problem: String },
    #[error(
        "`--shard auto` outside a scheduler: none of SLURM_ARRAY_TASK_ID (Slurm job array) or JOB_COMPLETION_INDEX (Kubernetes Indexed Job) is set; run it as an array task, or give --shard K/N"
    )]
    NoScheduler,
    #[error("`--shard auto`: {0}")]
    Environment(String),
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.k, self.n)
    }
}

impl Shard {
    /// Checks 0 <= k < n.
    pub fn new(k: usize, n: usize) -> Result<Shard, ShardError> {
        let problem = if n == 0 {
            Some("N must be at least 1".to_string())
        } else if k >= n {
            Some(format!(
                "K must be below N (shards are numbered 0 to {}), got K = {k}",
                n - 1
            ))
        } else {
            None
        };
        match problem {
            Some(problem) => Err(ShardError::Range { k, n, problem }),
            None => Ok(Shard { k, n }),
        }
    }

    /// Parses a `--shard` value: `K/N`, or `auto` resolved from the environment `var` looks
    /// variables up in (`|name| std::env::var(name).ok()` in the binary).
    pub fn parse(arg: &str, var: impl Fn(&str) -> Option<String>) -> Result<Shard, ShardError> {
        let arg = arg.trim();
        if arg == "auto" {
            return Self::from_env(var);
        }
        let syntax = || ShardError::Syntax(arg.to_string());
        let (k, n) = arg.split_once('/').ok_or_else(syntax)?;
        let k = k.trim().parse::<usize>().map_err(|_| syntax())?;
        let n = n.trim().parse::<usize>().map_err(|_| syntax())?;
        Shard::new(k, n)
    }

    /// The shard of a Slurm array task or a Kubernetes Indexed Job pod.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Shard, ShardError> {
        let num = |name: &str| -> Result<Option<usize>, ShardError> {
            match var(name) {
                None => Ok(None),
                Some(v) if v.trim().is_empty() => Ok(None),
                Some(v) => v.trim().parse::<usize>().map(Some).map_err(|_| {
                    ShardError::Environment(format!("{name}={v} is not a non-negative integer"))
                }),
            }
        };
        let check = |k: usize, n: usize, how: String| {
            Shard::new(k, n).map_err(|e| match e {
                ShardError::Range { problem, .. } => {
                    ShardError::Environment(format!("{how}: {problem}"))
                }
                other => other,
            })
        };
        if let Some(id) = num("SLURM_ARRAY_TASK_ID")? {
            let min = num("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
            let n = match (num("SLURM_ARRAY_TASK_COUNT")?, num("SLURM_ARRAY_TASK_MAX")?) {
                (Some(count), _) => count,
                (None, Some(max)) if max >= min => max - min + 1,
                _ => {
                    return Err(ShardError::Environment(
                        "SLURM_ARRAY_TASK_ID is set but neither SLURM_ARRAY_TASK_COUNT nor SLURM_ARRAY_TASK_MAX (with SLURM_ARRAY_TASK_MIN) says how many tasks the array has".into(),
                    ));
                }
            };
            let k = id.checked_sub(min).ok_or_else(|| {
                ShardError::Environment(format!(
                    "SLURM_ARRAY_TASK_ID={id} is below SLURM_ARRAY_TASK_MIN={min}"
                ))
            })?;
            return check(
                k,
                n,
                format!(
                    "Slurm task {id} of an array from {min} with {n} tasks (the array must be a contiguous range such as --array=0-{})",
                    n.saturating_sub(1)
                ),
            );
        }
        if let Some(index) = num("JOB_COMPLETION_INDEX")? {
            let n = num(K8S_COUNT_VAR)?.ok_or_else(|| {
                ShardError::Environment(format!(
                    "JOB_COMPLETION_INDEX is set but {K8S_COUNT_VAR} is not: the Indexed Job's manifest must set it to the Job's completions"
                ))
            })?;
            return check(
                index,
                n,
                format!("JOB_COMPLETION_INDEX={index} with {K8S_COUNT_VAR}={n}"),
            );
        }
        Err(ShardError::NoScheduler)
    }

    /// Whether the unit at `index` (its position in the pipeline's units) is in this shard.
    pub fn contains(&self, index: usize) -> bool {
        index % self.n == self.k
    }

    /// The indices of this shard's units among `units` units.
    pub fn indices(&self, units: usize) -> impl Iterator<Item = usize> + '_ {
        (self.k..units).step_by(self.n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn k_of_n() {
        assert_eq!(Shard::parse("0/1", env(&[])), Ok(Shard { k: 0, n: 1 }));
        assert_eq!(Shard::parse(" 3/4 ", env(&[])), Ok(Shard { k: 3, n: 4 }));
        for bad in ["5/4", "4/4", "0/0", "1/0"] {
            let e = Shard::parse(bad, env(&[])).unwrap_err();
            assert!(matches!(e, ShardError::Range { .. }), "{bad}: {e}");
            assert!(e.to_string().contains(&format!("--shard {bad}")), "{e}");
        }
        for bad in ["", "3", "a/b", "-1/4", "1/2/3", "1 of 4"] {
            let e = Shard::parse(bad, env(&[])).unwrap_err();
            assert_eq!(e, ShardError::Syntax(bad.trim().into()));
        }
    }

    /// Every unit is in exactly one shard, shard K holds K, K+N, ..., and the indices
    /// agree with `contains`.
    #[test]
    fn shards_partition_the_units() {
        for n in 1..=7 {
            let mut owner = vec![None; 23];
            for k in 0..n {
                let s = Shard::new(k, n).unwrap();
                for i in s.indices(23) {
                    assert!(owner[i].is_none());
                    assert!(s.contains(i));
                    owner[i] = Some(k);
                }
            }
            assert!(owner.iter().enumerate().all(|(i, o)| *o == Some(i % n)));
        }
        assert_eq!(
            Shard::new(1, 4).unwrap().indices(10).collect::<Vec<_>>(),
            [1, 5, 9]
        );
    }

    #[test]
    fn slurm_arrays() {
        let s = |vars| Shard::parse("auto", env(vars));
        assert_eq!(
            s(&[
                ("SLURM_ARRAY_TASK_ID", "2"),
                ("SLURM_ARRAY_TASK_COUNT", "4")
            ]),
            Ok(Shard { k: 2, n: 4 })
        );
        // --array=1-8: MIN 1, MAX 8.
        assert_eq!(
            s(&[
                ("SLURM_ARRAY_TASK_ID", "1"),
                ("SLURM_ARRAY_TASK_MIN", "1"),
                ("SLURM_ARRAY_TASK_MAX", "8")
            ]),
            Ok(Shard { k: 0, n: 8 })
        );
        assert_eq!(
            s(&[
                ("SLURM_ARRAY_TASK_ID", "9"),
                ("SLURM_ARRAY_TASK_MIN", "1"),
                ("SLURM_ARRAY_TASK_MAX", "9"),
                ("SLURM_ARRAY_TASK_COUNT", "9")
            ]),
            Ok(Shard { k: 8, n: 9 })
        );
        // A stepped array (--array=0-6:2, COUNT 4) cannot be mapped onto 0..N.
        let e = s(&[
            ("SLURM_ARRAY_TASK_ID", "6"),
            ("SLURM_ARRAY_TASK_MIN", "0"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ])
        .unwrap_err();
        assert!(e.to_string().contains("contiguous"), "{e}");
        let e = s(&[("SLURM_ARRAY_TASK_ID", "2")]).unwrap_err();
        assert!(e.to_string().contains("SLURM_ARRAY_TASK_COUNT"), "{e}");
        let e = s(&[
            ("SLURM_ARRAY_TASK_ID", "x"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ])
        .unwrap_err();
        assert!(e.to_string().contains("SLURM_ARRAY_TASK_ID=x"), "{e}");
    }

    #[test]
    fn kubernetes_indexed_jobs() {
        let s = |vars| Shard::parse("auto", env(vars));
        assert_eq!(
            s(&[("JOB_COMPLETION_INDEX", "0"), (K8S_COUNT_VAR, "3")]),
            Ok(Shard { k: 0, n: 3 })
        );
        let e = s(&[("JOB_COMPLETION_INDEX", "0")]).unwrap_err();
        assert!(e.to_string().contains(K8S_COUNT_VAR), "{e}");
        let e = s(&[("JOB_COMPLETION_INDEX", "3"), (K8S_COUNT_VAR, "3")]).unwrap_err();
        assert!(e.to_string().contains("JOB_COMPLETION_INDEX=3"), "{e}");
    }

    #[test]
    fn auto_outside_a_scheduler_names_the_variables() {
        let e = Shard::parse("auto", env(&[("SLURM_JOB_ID", "5")])).unwrap_err();
        assert_eq!(e, ShardError::NoScheduler);
        let text = e.to_string();
        assert!(
            text.contains("SLURM_ARRAY_TASK_ID") && text.contains("JOB_COMPLETION_INDEX"),
            "{text}"
        );
    }
}
