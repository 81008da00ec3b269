import logging


class ClientErrorsInOneLine(logging.Filter):
    """Log a 4xx answer as the one line that says it: a refused request is not a crash, and its
    traceback (Django attaches one to every 403) would bury the real ones."""

    def filter(self, record: logging.LogRecord) -> bool:
        if 400 <= getattr(record, "status_code", 0) < 500:
            record.exc_info, record.exc_text, record.stack_info = None, None, None
        return True
