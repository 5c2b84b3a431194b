import io
import json
import logging

import pytest

from detector.logging_setup import LOGGER, log, setup


@pytest.mark.parametrize("fields", [{}, {"step": "detect", "seconds": 1.5}, {"path": "/var/log/mail.log"}])
def test_json_lines_parse_and_carry_fields(fields):
    buf = io.StringIO()
    logger = setup("json", stream=buf)
    log(logger, logging.INFO, "step done", **fields)
    doc = json.loads(buf.getvalue())
    assert doc["msg"] == "step done" and doc["level"] == "info" and doc["logger"] == LOGGER
    assert {k: doc[k] for k in fields} == fields


def test_text_format_is_one_line():
    buf = io.StringIO()
    logger = setup("text", stream=buf)
    log(logger, logging.WARNING, "no GeoIP", dir="/x")
    assert buf.getvalue() == "detector: warning: no GeoIP dir=/x\n"


def test_level_filters_and_setup_is_idempotent():
    buf = io.StringIO()
    setup("json", stream=io.StringIO())
    logger = setup("json", stream=buf, level=logging.WARNING)
    assert len(logger.handlers) == 1
    log(logger, logging.INFO, "hidden")
    assert buf.getvalue() == ""


def test_unknown_format():
    with pytest.raises(ValueError):
        setup("xml")
