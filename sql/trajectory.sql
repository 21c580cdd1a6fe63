-- TRAJECTORY: how the spectra develop during training. For every model extracted at two or
-- more revisions (training checkpoints, such as Pythia's `step<N>` branches), per model, kind,
-- layer and revision: the training step (N of a `step<N>` revision; NULL for other names such
-- as `main`), the layer's relative depth layer / (n_layers - 1) (0 for a one-layer model), and
-- every metric: the whole-layer matrix's value for W_Q, W_K, W_V and W_O, the mean over the
-- layer's heads for the OV and QK circuits (as the hypothesis test's model means use them).
-- Models at a single revision do not appear (the table is empty when there are none). The
-- report draws each metric against step + 1 on a log axis for W_V, W_O and OV, one line per
-- layer shaded by depth.
WITH multi AS (
  SELECT model FROM models GROUP BY model HAVING COUNT(DISTINCT revision) > 1
)
SELECT
    mt.model,
    mt.revision,
    CASE
      WHEN mt.revision LIKE 'step%'
      THEN TRY_CAST(string_to_array(mt.revision, 'step')[2] AS BIGINT)
    END AS step,
    mt.kind,
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
    AVG(mt.entropy) AS entropy,
    AVG(mt.mp_edge) AS mp_edge,
    AVG(mt.spectral_norm_over_mp) AS spectral_norm_over_mp,
    AVG(mt.mp_softrank) AS mp_softrank
FROM matrices AS mt
JOIN models AS md ON mt.model = md.model AND mt.revision = md.revision
JOIN multi ON mt.model = multi.model
WHERE (mt.kind IN ('W_Q', 'W_K', 'W_V', 'W_O') AND mt.head IS NULL)
   OR (mt.kind IN ('OV', 'QK') AND mt.head IS NOT NULL)
GROUP BY mt.model, mt.revision, mt.kind, mt.layer, md.n_layers
ORDER BY mt.model, mt.kind, mt.layer, step, mt.revision;
