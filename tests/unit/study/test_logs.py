import io
import logging

import pytest

from optune.study import logs

TOKEN = "UpVO5_sNzvcO_WxYHjlXSDZw"  # the shape of secrets.token_urlsafe(18)


@pytest.mark.parametrize("path, shown", [
    (f"/r/{TOKEN}", "/r/<token>"),
    (f"/r/{TOKEN}/item", "/r/<token>/item"),
    (f"/r/{TOKEN}/rate", "/r/<token>/rate"),
    (f"/r//{TOKEN}", "/r//<redacted>"),
    (f"/R/{TOKEN}", "/<redacted>/<redacted>"),
    (f"/r/./{TOKEN}", "/r/./<redacted>"),
    (f"/r/{TOKEN}/item?t={TOKEN}", "/r/<token>/item?<redacted>"),
    (f"/{TOKEN}", "/<redacted>"),
    ("/static/study.css", "/static/study.css"),
    ("/", "/"),
    ("/a/b/c/d/e/f/g/h/i/j", "/<redacted>/<redacted>/<redacted>/<redacted>/<redacted>/<redacted>/<redacted>/..."),
])
def test_redact_path_keeps_only_the_pages_own_segments(path, shown):
    assert logs.redact_path(path) == shown
    assert logs.redact_path(shown) == shown  # redacting twice changes nothing


def test_request_line_drops_the_query_and_odd_methods():
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": f"/r/{TOKEN}/rate", "QUERY_STRING": f"x={TOKEN}"}
    assert logs.request_line(environ) == "POST /r/<token>/rate?<redacted>"
    assert logs.request_line({"REQUEST_METHOD": TOKEN, "PATH_INFO": "/r/a?b"}) == "OTHER /r/<token>"


def test_scrub_removes_paths_and_token_shaped_text():
    text = logs.scrub(f"Exception while serving /R/{TOKEN}: bad value {TOKEN} or %55{TOKEN[1:]} at 100%")
    assert TOKEN not in text and TOKEN[1:] not in text
    assert text == "Exception while serving /<redacted>/<redacted> bad value <redacted> or <redacted> at 100%"


def _raise_chained():
    try:
        raise KeyError(f"/r/{TOKEN}")
    except KeyError as err:
        raise ValueError(f"could not read {TOKEN}") from err


def test_safe_traceback_keeps_code_locations_and_scrubs_messages():
    with pytest.raises(ValueError) as info:
        _raise_chained()
    text = logs.safe_traceback(info.value)
    assert TOKEN not in text
    assert "in _raise_chained" in text and "KeyError: '/r/<token>'" in text
    assert text.rstrip().endswith("ValueError: could not read <redacted>")


@pytest.mark.parametrize("debug", [False, True])
def test_every_record_through_the_handler_is_redacted(debug):
    stream = io.StringIO()
    handler = logs.configure(stream, debug=debug)
    try:
        waitress = logging.getLogger("waitress")
        waitress.info(f"Client disconnected while serving /r/{TOKEN}/rate")  # below WARNING: not shown
        try:
            _raise_chained()
        except ValueError:
            waitress.exception(f"Exception while serving /r/{TOKEN}/rate")
        logging.getLogger("optune.study.app").warning("odd %s and 50%% done", TOKEN)
    finally:
        for name in (logs.LOGGER_NAME, "waitress"):
            logging.getLogger(name).removeHandler(handler)
            logging.getLogger(name).propagate = True
    text = stream.getvalue()
    assert TOKEN not in text and "Client disconnected" not in text
    assert "ERROR Exception while serving /r/<token>/rate" in text
    assert "WARNING odd <redacted> and 50% done" in text
    assert ("Traceback (most recent call last)" in text) is debug
    if not debug:
        assert "Exception while serving /r/<token>/rate (ValueError)" in text
