"""``t2igan download``: md5, resume with HTTP Range, extraction; against a server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import io
import tarfile
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

from t2igan.data.download import FILES, Remote, download, fetch

from .data_fixtures import make_cub


class RangeHandler(SimpleHTTPRequestHandler):
    """Serves files, honouring ``Range: bytes=N-`` (the standard handler ignores it)."""

    ranges: list[str] = []

    def log_message(self, *args) -> None:  # keep the test output quiet
        pass

    def do_GET(self) -> None:
        spec = self.headers.get("Range")
        if not spec:
            return super().do_GET()
        type(self).ranges.append(spec)
        data = open(self.translate_path(self.path), "rb").read()
        start = int(spec.removeprefix("bytes=").rstrip("-"))
        self.send_response(206)
        self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        self.wfile.write(data[start:])


@pytest.fixture
def server(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(RangeHandler, directory=str(served)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    RangeHandler.ranges = []
    yield served, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _tgz(folder) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    return buf.getvalue()


def test_download_resume_and_extract(tmp_path, server):
    served, url = server
    data = _tgz(make_cub(tmp_path / "src", per_class=1))
    (served / "CUB_200_2011.tgz").write_bytes(data)
    md5 = hashlib.md5(data).hexdigest()
    root = tmp_path / "data"
    part = root / "downloads" / "CUB_200_2011.tgz.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(data[:100])  # an interrupted download
    remote = Remote(FILES["cub"][0].url, md5, ".")
    download("cub", root, mirror=url, files=(remote,))
    assert RangeHandler.ranges == ["bytes=100-"]
    assert (root / "downloads" / "CUB_200_2011.tgz").read_bytes() == data and not part.exists()
    assert (root / "CUB_200_2011" / "images.txt").exists()
    from t2igan.data.cub import CUBReader

    assert len(CUBReader(root / "CUB_200_2011", text_dir=tmp_path / "src" / "text_c10")
               .load("train")) == 2  # fmt: skip
    download("cub", root, mirror=url, files=(remote,))  # done already: nothing fetched
    assert RangeHandler.ranges == ["bytes=100-"]


def test_md5_mismatch_deletes_the_download(tmp_path, server):
    served, url = server
    (served / "setid.mat").write_bytes(b"corrupted")
    dest = tmp_path / "setid.mat"
    with pytest.raises(RuntimeError, match="md5 .* expected a5357ecc"):
        fetch(f"{url}/setid.mat", dest, FILES["flowers"][2].md5)
    assert not dest.exists() and not (tmp_path / "setid.mat.part").exists()


def test_http_error_is_reported(tmp_path, server):
    _, url = server
    with pytest.raises(RuntimeError, match="HTTP 404"):
        fetch(f"{url}/missing.tgz", tmp_path / "x.tgz", "0" * 32)


def test_official_md5s():
    assert {r.name: r.md5 for files in FILES.values() for r in files} == {
        "CUB_200_2011.tgz": "97eceeb196236b17998738112f37df78",
        "102flowers.tgz": "52808999861908f626f3c1f4e79d11fa",
        "imagelabels.mat": "e0620be6f572b9609742df49c70aed4d",
        "setid.mat": "a5357ecc9cb78c4bef273ce3793fc85c",
    }
