"""IgakuQA self-benchmark: the Japanese national medical licensing exam, scored like the JMedLLM paper.

One module per job: ``data`` (loader, validation, fingerprint), ``sets`` (question sets),
``prompting`` (paper templates, first-line answers), ``scoring`` (pure metric functions),
``safety`` (contraindicated picks, pass lines), ``baselines``, ``loglik`` (choice log-likelihood),
``store`` (SQLite), ``run_lock`` (which runs are being run), ``runner`` (resumable runs), ``report``,
``compare`` and ``cli``.
"""
