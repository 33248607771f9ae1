"""``t2igan app`` takes no files (issue 34): the upload route Gradio serves on every page refuses
any file with data, and a port that is not one is a one-line error."""

from __future__ import annotations

import pytest

from .test_app import _free_port
from .test_generate_limits import ckpts  # noqa: F401  (untrained GAWWN checkpoints)

app = pytest.importorskip("t2igan.cli.app", reason="the app extra (Gradio) is not installed")


def test_the_upload_route_takes_no_file(ckpts):  # noqa: F811
    import httpx

    page, url = app.serve(app.Session(ckpts["box"]), port=_free_port(), block=False)
    try:
        upload = f"{url.rstrip('/')}/gradio_api/upload"
        files = {"files": ("big.bin", b"\0" * 100_000, "application/octet-stream")}
        refused = httpx.post(upload, files=files, timeout=60)
        assert refused.status_code == 413 and "maximum allowed size of 0 bytes" in refused.text
        assert httpx.get(url, timeout=60).status_code == 200  # the page itself is served
    finally:
        page.close()


@pytest.mark.parametrize("port", ["-1", "65536"])
def test_a_port_that_is_not_one_is_one_line(port, ckpts, capsys):  # noqa: F811
    from t2igan.cli import main

    with pytest.raises(SystemExit) as exit:
        main(["app", "--ckpt", ckpts["box"], f"--port={port}"])
    assert exit.value.code == 2 and capsys.readouterr().err.splitlines() == [
        f"t2igan app: argument --port: {port} is not a port number (1 to 65535) (see t2igan "
        "app --help)"
    ]
