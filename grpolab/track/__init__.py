"""Re-exports of grpolab/run/ (the run record) for the modules that still import grpolab.track."""
