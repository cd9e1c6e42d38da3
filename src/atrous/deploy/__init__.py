"""What a deployer runs on top of the engines (:mod:`atrous.engines`): benchmarks of models,
engines and the data pipeline against their peers, memory measurement, and ``atrous quantize``'s
calibration and report.
"""
