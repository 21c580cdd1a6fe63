-- The inputs of `pipeline run test`: per model, revision and matrix kind, the mean over
-- layers of every metric. The test picks one metric column and one kind from this result.
--
-- W_Q, W_K, W_V, W_O: the whole-layer matrices (head IS NULL), one per layer.
-- OV, QK: the per-head circuits (head IS NOT NULL); the mean over all (layer, head) rows,
-- which is the mean over layers of the per-layer head means since every layer has the same
-- number of heads.
-- AVG skips NULL metric values (a layer whose power-law fit failed) and propagates NaN.
-- Only models with a models/ row (complete extractions) take part; lab and the dimensions
-- (for the size covariates of the size-controlled test) come from there.
-- A model extracted at several revisions (training checkpoints) enters once: at a revision that
-- is not a `step<N>` branch (such as `main`, the released model) when it has one, else at its
-- largest step (ties broken by revision name). Counting each checkpoint would count one model
-- several times.
WITH chosen AS (
  SELECT model, revision FROM (
    SELECT
        model,
        revision,
        ROW_NUMBER() OVER (
          PARTITION BY model
          ORDER BY
            CASE
              WHEN revision LIKE 'step%'
              THEN TRY_CAST(string_to_array(revision, 'step')[2] AS BIGINT)
            END DESC NULLS FIRST,
            revision
        ) AS pick
    FROM models
  ) AS ranked
  WHERE pick = 1
)
SELECT
    mt.model,
    mt.revision,
    md.lab,
    md.n_layers,
    md.d_model,
    md.n_heads,
    md.n_kv_heads,
    md.d_head,
    mt.kind,
    COUNT(*) AS matrices,
    AVG(mt.spectral_norm) AS spectral_norm,
    AVG(mt.frobenius_norm) AS frobenius_norm,
    AVG(mt.nuclear_norm) AS nuclear_norm,
    AVG(mt.stable_rank) AS stable_rank,
    AVG(mt.effective_rank) AS effective_rank,
    AVG(mt.condition_number) AS condition_number,
    AVG(mt.alpha) AS alpha,
    AVG(mt.alpha_xmin) AS alpha_xmin,
    AVG(mt.alpha_ks) AS alpha_ks,
    AVG(mt.num_pl_spikes) AS num_pl_spikes,
    AVG(mt.log_norm) AS log_norm,
    AVG(mt.log_spectral_norm) AS log_spectral_norm,
    AVG(mt.alpha_weighted) AS alpha_weighted,
    AVG(mt.entropy) AS entropy,
    AVG(mt.mp_edge) AS mp_edge,
    AVG(mt.spectral_norm_over_mp) AS spectral_norm_over_mp,
    AVG(mt.mp_softrank) AS mp_softrank
FROM matrices AS mt
JOIN models AS md ON mt.model = md.model AND mt.revision = md.revision
JOIN chosen AS ch ON mt.model = ch.model AND mt.revision = ch.revision
WHERE (mt.kind IN ('W_Q', 'W_K', 'W_V', 'W_O') AND mt.head IS NULL)
   OR (mt.kind IN ('OV', 'QK') AND mt.head IS NOT NULL)
GROUP BY mt.model, mt.revision, md.lab, md.n_layers, md.d_model, md.n_heads, md.n_kv_heads,
    md.d_head, mt.kind
ORDER BY mt.kind, mt.model, mt.revision;
