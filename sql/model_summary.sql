-- SPECTRAL SIGNATURE SUMMARY (the seed notebook's table): one row per model and revision with
-- its lab, heritage and layer count, and the mean and standard deviation over layers of the
-- spectral norm of the whole-layer (head IS NULL) W_V and W_O matrices.
--
-- The std is the POPULATION standard deviation (STDDEV_POP, numpy's np.std default with
-- ddof = 0), as the seed computed it with np.std over the per-layer norms.
-- Only models with a models/ row (complete extractions) appear; a model without W_V or W_O
-- rows has NULLs there.
WITH per_kind AS (
  SELECT
      model,
      revision,
      kind,
      AVG(spectral_norm) AS mean_spectral_norm,
      STDDEV_POP(spectral_norm) AS std_spectral_norm
  FROM matrices
  WHERE head IS NULL AND kind IN ('W_V', 'W_O')
  GROUP BY model, revision, kind
)
SELECT
    md.model,
    md.revision,
    md.lab,
    md.heritage,
    md.n_layers AS layers,
    v.mean_spectral_norm AS w_v_mean,
    v.std_spectral_norm AS w_v_std,
    o.mean_spectral_norm AS w_o_mean,
    o.std_spectral_norm AS w_o_std
FROM models AS md
LEFT JOIN per_kind AS v
  ON v.model = md.model AND v.revision = md.revision AND v.kind = 'W_V'
LEFT JOIN per_kind AS o
  ON o.model = md.model AND o.revision = md.revision AND o.kind = 'W_O'
ORDER BY md.lab, md.model, md.revision;
