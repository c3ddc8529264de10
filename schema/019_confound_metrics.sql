-- 019_confound_metrics: the outcomes of `metadb confound` ("Source Matters", Juodelyte et al. 2024).
-- auc_clean is a confounded-trained model's AUC on the clean test set; auc_confounded_negatives its
-- AUC on the test set with the confounder on the negatives (the study's AUC_<kind>_negative). Both
-- are AUCs: higher is better. The gap between them (clean minus confounded) is derived, not stored.
INSERT INTO metric_directions VALUES
    ('auc_clean', true, 'AUC on the clean test set of a confounded fine-tuning (metadb confound)'),
    ('auc_confounded_negatives', true, 'AUC on the test set with the confounder on the negatives (metadb confound)')
ON CONFLICT DO NOTHING;
