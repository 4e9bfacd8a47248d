"""healthscore: churn-predictive customer health scores for B2B SaaS customer success.

Data flows through stages, one module each:

    events -> metric history (features/) -> training set -> model (models/)
           -> explanations -> scores and bands -> reports (pipelines/)

This package holds what every stage shares: the input data contract
(:mod:`healthscore.contract`) and the demo-book simulator (:mod:`healthscore.simulate`).
"""

__version__ = "0.1.0"
