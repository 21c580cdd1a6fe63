-- LAB AVERAGES (the seed notebook's table): per lab, the number of models and the mean and
-- standard deviation of the per-model mean W_V and W_O spectral norms (whole-layer matrices,
-- head IS NULL, averaged over layers as in model_summary.sql).
--
-- The std is the SAMPLE standard deviation (STDDEV_SAMP, ddof = 1): the seed used pandas'
-- groupby(...).agg('std'), whose default is ddof = 1. A lab with a single model therefore has
-- a NULL std (pandas prints NaN). Models without a lab form one group with a NULL lab (pandas
-- would drop them). A model extracted at several revisions (training checkpoints) counts once,
-- at the revision `pipeline run test` uses (model_means.sql): one that is not a `step<N>`
-- branch when it has one, else its largest step; the `trajectory` table has the others.
-- This file computes the per-model means itself: files run in name order and
-- model_summary.sql comes after it.
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
),
per_model AS (
  SELECT
      mt.model,
      mt.revision,
      md.lab,
      AVG(CASE WHEN mt.kind = 'W_V' THEN mt.spectral_norm END) AS w_v_mean,
      AVG(CASE WHEN mt.kind = 'W_O' THEN mt.spectral_norm END) AS w_o_mean
  FROM matrices AS mt
  JOIN models AS md ON mt.model = md.model AND mt.revision = md.revision
  JOIN chosen AS ch ON mt.model = ch.model AND mt.revision = ch.revision
  WHERE mt.head IS NULL AND mt.kind IN ('W_V', 'W_O')
  GROUP BY mt.model, mt.revision, md.lab
)
SELECT
    lab,
    COUNT(*) AS models,
    AVG(w_v_mean) AS w_v_mean,
    STDDEV_SAMP(w_v_mean) AS w_v_std,
    AVG(w_o_mean) AS w_o_mean,
    STDDEV_SAMP(w_o_mean) AS w_o_std
FROM per_model
GROUP BY lab
ORDER BY lab;
