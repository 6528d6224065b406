"""`python -m workers [celery worker options]`: a worker consuming every generated queue."""

import sys

from workers import app

if __name__ == "__main__":
    app.worker_main(argv=["worker", "--loglevel=INFO", *sys.argv[1:]])
