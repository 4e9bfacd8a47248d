"""Models: the hand-weighted scorecard, a regularised logistic baseline and calibrated
LightGBM, all judged out-of-time on the same backtest (issue #4).

Pure estimators (scikit-learn conventions); only ``pipelines/`` logs them to MLflow.
"""
