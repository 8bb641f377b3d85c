"""mlserver.logging.logger: records reach the server's log."""
import logging as _logging

logger = _logging.getLogger("mlserver")
