"""The approved GLM: cleaning, one scikit-learn Pipeline, training, scoring, synthetic data."""
