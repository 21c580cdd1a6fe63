-- LAYER PROFILE: per model, revision, matrix kind and layer, the mean of every metric, with
-- the layer's relative depth layer / (n_layers - 1): 0 at the first layer, 1 at the last
-- (0 for a one-layer model).
--
-- Whole-layer and per-head rows are never mixed: `scope` is 'layer' for the whole-layer
-- matrix (head IS NULL; one row per layer, so the mean is its value) and 'head' for the mean
-- over the layer's heads (per-head rows: query heads for W_Q, W_O, OV and QK, KV heads for
-- W_K and W_V). `matrices` counts the rows averaged. num_pl_spikes becomes a DOUBLE mean.
-- Only models with a models/ row (complete extractions) appear.
WITH scoped AS (
  SELECT
    mt.*,
    CASE WHEN mt.head IS NULL THEN 'layer' ELSE 'head' END AS scope
  FROM matrices AS mt
)
SELECT
    mt.model,
    mt.revision,
    mt.kind,
    mt.scope,
    mt.layer,
    CASE
      WHEN md.n_layers > 1 THEN CAST(mt.layer AS DOUBLE) / CAST(md.n_layers - 1 AS DOUBLE)
      ELSE 0.0
    END AS depth,
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
    AVG(mt.entropy) AS entropy
FROM scoped AS mt
JOIN models AS md ON mt.model = md.model AND mt.revision = md.revision
GROUP BY mt.model, mt.revision, mt.kind, mt.scope, mt.layer, md.n_layers
ORDER BY mt.model, mt.revision, mt.kind, mt.scope, mt.layer;
