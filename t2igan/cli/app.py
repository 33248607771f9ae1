"""``t2igan app``: GAWWN's what-and-where drawing as a local web page (Gradio).

    t2igan app --ckpt runs/gawwn_keypoints/checkpoints/last.ckpt \
        --keypoint-generator runs/gawwn_keypoint_generator/checkpoints/last.ckpt
    t2igan app --ckpt runs/gawwn_box/checkpoints/last.ckpt

Type a caption (*what*), then say *where* on the canvas: for a keypoint model, pick a part and
click where it goes (click again, or drag its dot, to move it; "remove part" takes it off); for a
box model, drag across the canvas or click two opposite corners of the box. The samples update
after each change. "Resample noise" draws new noise; with a keypoint generator, "Complete
keypoints" has G_k draw the parts not placed, from the caption (all of them when none is
placed), the authors' interactive demo's completion.
The checkpoints load once, on the CPU or a GPU (``--device``). Needs the ``app`` extra
(``pip install 't2igan[app]'``); the page is served on ``--host`` (default 127.0.0.1) only.
"""

# No `from __future__ import annotations`: Gradio reads the handlers' `gr.SelectData` annotation
# as a class, and `gr` is imported inside build() (Gradio loads only for the page).
import argparse
import json
import os

import torch
from PIL import Image

from t2igan.command import CommandParser

#: Samples shown per change, and the side of the canvas in pixels.
NUM_SAMPLES = 4
CANVAS = 256
#: A drag that starts this close to a placed part (normalised) moves that part.
GRAB = 0.08
#: The largest file, in bytes, that the page's upload route takes: none (the page has no file
#: input; Gradio's route would otherwise store files of any size).
MAX_UPLOAD = 0

#: Dragging on the canvas (Gradio's image gives clicks only): a press and release more than
#: 4 px apart is written as ``[x0, y0, x1, y1]`` (normalised) into the hidden ``#drag`` box,
#: whose input event runs the page's drag handler, and the click that follows it is swallowed.
DRAG_JS = """
() => {
  let start = null, dragged = false;
  const canvasImg = (e) => e.target.closest && e.target.closest('#canvas img');
  const at = (e, img) => {
    const r = img.getBoundingClientRect();
    return [(e.clientX - r.left) / r.width, (e.clientY - r.top) / r.height];
  };
  document.addEventListener('dragstart', (e) => { if (canvasImg(e)) e.preventDefault(); }, true);
  document.addEventListener('pointerdown', (e) => {
    const img = canvasImg(e);
    start = img ? {img, x: e.clientX, y: e.clientY, from: at(e, img)} : null;
  }, true);
  document.addEventListener('pointerup', (e) => {
    const s = start;
    start = null;
    if (!s || Math.hypot(e.clientX - s.x, e.clientY - s.y) < 4) return;  // a click
    dragged = true;
    setTimeout(() => { dragged = false; }, 100);
    const box = document.querySelector('#drag textarea, #drag input');
    box.value = JSON.stringify([...s.from, ...at(e, s.img), Date.now()]);  // each drag differs
    box.dispatchEvent(new Event('input', {bubbles: true}));
  }, true);
  document.addEventListener('click', (e) => {
    if (dragged && e.target.closest && e.target.closest('#canvas')) e.stopPropagation();
  }, true);
}
"""


class Session:
    """The models and what the page asks of them (no Gradio here, so it is testable alone).

    Args:
        ckpt: a GAWWNKeypoints or GAWWNBox checkpoint.
        keypoint_generator: optional GAWWNKeypointGenerator checkpoint (keypoint models).
        device: torch device.
    """

    def __init__(self, ckpt: str, keypoint_generator: str | None = None, device: str = "cpu"):
        from t2igan.pipeline import Pipeline

        self.pipe = Pipeline.from_checkpoint(ckpt, device, keypoint_generator=keypoint_generator)
        self.model, self.kg, self.key = (
            self.pipe.model,
            self.pipe.keypoint_generator,
            self.pipe.location,
        )
        if self.key is None:
            raise ValueError(f"{ckpt} ({type(self.model).__name__}) takes no boxes or keypoints: "
                             "the page draws with GAWWN models (experiments/gawwn_*.yaml)")  # fmt: skip
        self.parts = self.pipe.part_names if self.key == "keypoints" else ()

    def empty(self) -> dict:
        """What nothing placed looks like: no keypoints (or the whole image as the box)."""
        if self.key == "keypoints":
            return {"keypoints": [[0.0, 0.0, 0.0] for _ in self.parts], "corner": None}
        return {"boxes": [0.1, 0.1, 0.8, 0.8], "corner": None}

    def place(self, where: dict, x: float, y: float, part: str | None) -> dict:
        """``where`` after a click at normalised (x, y): the part put (or moved) there, or a box
        corner (the first click of a pair starts the box, the second closes it)."""
        where = {k: (list(map(list, v)) if k == "keypoints" else v) for k, v in where.items()}
        x, y = min(max(x, 0.0), 1.0), min(max(y, 0.0), 1.0)
        if self.key == "keypoints":
            if part not in self.parts:
                raise ValueError(f"choose a part first (one of {', '.join(self.parts)})")
            where["keypoints"][self.parts.index(part)] = [x, y, 1.0]
        elif where.get("corner") is None:
            where["corner"] = [x, y]
        else:
            (x0, y0), where["corner"] = where["corner"], None
            w, h = abs(x - x0), abs(y - y0)
            if w < 0.02 or h < 0.02:
                raise ValueError("the box has (almost) no area: click two opposite corners")
            where["boxes"] = [min(x, x0), min(y, y0), w, h]
        return where

    def drag(self, where: dict, start: tuple[float, float], end: tuple[float, float]):
        """``(where, what was done)`` after a drag from ``start`` to ``end`` (normalised): the
        placed part nearest ``start`` (within :data:`GRAB`) moved to ``end``, or for a box
        model the box with those two opposite corners."""
        (x0, y0), (x1, y1) = ((min(max(v, 0.0), 1.0) for v in p) for p in (start, end))
        if self.key == "boxes":
            where = self.place({**where, "corner": [x0, y0]}, x1, y1, None)
            return where, "drew the box ({:.2f}, {:.2f}, {:.2f}, {:.2f})".format(*where["boxes"])
        placed = [(((x - x0) ** 2 + (y - y0) ** 2) ** 0.5, name)
                  for name, (x, y, v) in zip(self.parts, where["keypoints"]) if v > 0]  # fmt: skip
        near = [name for d, name in sorted(placed) if d <= GRAB]
        if not near:
            raise ValueError("no placed part where the drag started: press on a dot to drag it")
        return self.place(where, x1, y1, near[0]), f"moved {near[0]} to ({x1:.2f}, {y1:.2f})"

    def remove(self, where: dict, part: str | None) -> dict:
        if self.key == "keypoints" and part in self.parts:
            where = {**where, "keypoints": [list(p) for p in where["keypoints"]]}
            where["keypoints"][self.parts.index(part)] = [0.0, 0.0, 0.0]
        return where

    def text(self, caption: str) -> torch.Tensor:
        if not caption.strip():
            raise ValueError("type a caption first")
        return self.pipe.embed([caption])["text"]

    def noise(self, seed: int) -> torch.Tensor:
        return self.pipe.noise(NUM_SAMPLES, seed)

    def complete(self, where: dict, caption: str, seed: int) -> dict:
        """``where`` with the parts not placed drawn by G_k (visibility > 0.5; the demo's)."""
        from t2igan.callbacks.location import drawable

        if self.kg is None:
            raise ValueError("no keypoint generator: start the page with --keypoint-generator")
        given = torch.tensor(where["keypoints"])[None]
        z = self.noise(seed)[:1]
        if self.kg.z_dim != self.model.z_dim:
            z = self.kg.sample_noise(1, generator=torch.Generator().manual_seed(seed))
        drawn = drawable(self.kg.complete(self.text(caption), z, given)).cpu()[0]
        return {**where, "keypoints": drawn.tolist()}

    def canvas(self, where: dict) -> Image.Image:
        """The canvas: grey, with the keypoints as dots or the box outline (and a started
        corner as a small cross)."""
        from PIL import ImageDraw

        from t2igan.callbacks.location import draw_location

        loc = torch.tensor(where[self.key])[None]
        img = draw_location(torch.zeros(1, 3, CANVAS, CANVAS), self.key, loc)[0]
        pil = Image.fromarray(((img + 1) * 127.5).round().byte().permute(1, 2, 0).numpy())
        if self.key == "keypoints":  # each placed part named beside its dot
            draw = ImageDraw.Draw(pil)
            for name, (x, y, v) in zip(self.parts, where["keypoints"]):
                if v > 0:
                    draw.text((x * CANVAS + 6, y * CANVAS - 6), name, fill=(255, 255, 255))
        if where.get("corner"):
            cx, cy = (v * CANVAS for v in where["corner"])
            draw = ImageDraw.Draw(pil)
            draw.line([cx - 6, cy, cx + 6, cy], fill=(255, 0, 0))
            draw.line([cx, cy - 6, cx, cy + 6], fill=(255, 0, 0))
        return pil

    def samples(self, where: dict, caption: str, seed: int) -> Image.Image:
        """:data:`NUM_SAMPLES` images for the caption and location, then them with the
        location drawn on, as one picture."""
        from t2igan.callbacks.figures import labelled_grid
        from t2igan.callbacks.location import draw_location
        from t2igan.cli.generate import readable

        loc = torch.tensor(where[self.key]).expand(
            NUM_SAMPLES, *torch.tensor(where[self.key]).shape
        )
        text = self.text(caption).expand(NUM_SAMPLES, -1)
        images = self.model.sample(text, self.noise(seed), **{self.key: loc}).cpu()
        big = readable(images)
        return labelled_grid(torch.cat([big, draw_location(big, self.key, loc)]), NUM_SAMPLES)


def build(session: Session):
    """The Gradio page of ``session``."""
    import gradio as gr

    keypoints = session.key == "keypoints"
    how = ("pick a part, then click on the canvas to place it (click again, or drag its dot, to "
           "move it)" if keypoints else
           "drag across the canvas, or click two opposite corners, to draw the box")  # fmt: skip
    with gr.Blocks(title="t2igan: what and where") as page:
        gr.Markdown(f"### GAWWN: what and where to draw\n{type(session.model).__name__}: type a "
                    f"caption, then {how}.")  # fmt: skip
        where = gr.State(session.empty())
        seed = gr.State(0)
        with gr.Row():
            with gr.Column(scale=1):
                caption = gr.Textbox(label="caption", elem_id="caption",
                                     placeholder="a small bird with a red body and a blue head")  # fmt: skip
                part = gr.Radio(list(session.parts), label="part", elem_id="part",
                                value=session.parts[0] if keypoints else None,
                                visible=keypoints)  # fmt: skip
                canvas = gr.Image(session.canvas(session.empty()), label="where (click or drag)",
                                  elem_id="canvas", interactive=False, type="pil",
                                  format="png", height=CANVAS, width=CANVAS)  # fmt: skip
                with gr.Row():
                    resample = gr.Button("Resample noise", elem_id="resample")
                    complete = gr.Button("Complete keypoints (G_k)", elem_id="complete",
                                         visible=keypoints and session.kg is not None)  # fmt: skip
                    remove = gr.Button("Remove part", elem_id="remove", visible=keypoints)
                    clear = gr.Button("Clear", elem_id="clear")
            with gr.Column(scale=2):
                samples = gr.Image(label="samples (top) and the location asked for (bottom)",
                                   elem_id="samples", interactive=False, type="pil",
                                   format="png")  # fmt: skip
                status = gr.Markdown("", elem_id="status")
                # written by DRAG_JS; hidden by the page's CSS (an invisible Gradio component
                # is not in the page at all)
                drag = gr.Textbox(elem_id="drag", elem_classes=["t2igan-hidden"],
                                  container=False, show_label=False)  # fmt: skip

        def show(w, text, s):
            """Canvas, samples and a status line; an error is shown as the status."""
            try:
                if not text.strip():
                    return session.canvas(w), None, "Type a caption to see samples."
                if keypoints and not any(p[2] > 0 for p in w["keypoints"]):
                    return (
                        session.canvas(w),
                        None,
                        ("Place a part" + (" or press Complete keypoints." if session.kg else ".")),
                    )
                return session.canvas(w), session.samples(w, text, s), f"noise seed {s}"
            except ValueError as err:
                return session.canvas(w), None, f"**{err}**"

        def on_click(w, text, s, p, evt: gr.SelectData):
            try:
                x, y = evt.index
                w = session.place(w, x / CANVAS, y / CANVAS, p)
            except ValueError as err:
                return w, session.canvas(w), None, f"**{err}**"
            return (w, *show(w, text, s))

        def on_drag(w, text, s, moved):
            try:
                x0, y0, x1, y1 = (float(v) for v in json.loads(moved)[:4])
                w, what = session.drag(w, (x0, y0), (x1, y1))
            except (ValueError, TypeError) as err:
                return w, session.canvas(w), None, f"**{err}**"
            canvas, images, status = show(w, text, s)
            return w, canvas, images, f"{what}; {status}"

        def on_complete(w, text, s):
            try:
                w = session.complete(w, text, s)
            except ValueError as err:
                return w, session.canvas(w), None, f"**{err}**"
            return (w, *show(w, text, s))

        outs = [canvas, samples, status]
        canvas.select(on_click, [where, caption, seed, part], [where, *outs])
        drag.change(on_drag, [where, caption, seed, drag], [where, *outs])
        caption.submit(show, [where, caption, seed], outs)
        caption.blur(show, [where, caption, seed], outs)
        resample.click(lambda s: s + 1, seed, seed).then(show, [where, caption, seed], outs)
        complete.click(on_complete, [where, caption, seed], [where, *outs])
        remove.click(session.remove, [where, part], where).then(show, [where, caption, seed], outs)
        clear.click(session.empty, None, where).then(show, [where, caption, seed], outs)
    return page


def serve(session: Session, host: str = "127.0.0.1", port: int | None = None,
          block: bool = True):  # fmt: skip
    """Serve the page; returns (page, url) when ``block`` is False (tests)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # nothing leaves the machine
    page = build(session)
    # The page takes no files, but Gradio serves its upload route (POST /gradio_api/upload) on
    # every page: MAX_UPLOAD bytes refuses every file with data (413) before it is stored.
    _, url, _ = page.launch(server_name=host, server_port=port, share=False,
                            prevent_thread_lock=not block, quiet=not block, js=DRAG_JS,
                            css=".t2igan-hidden {display: none !important}",
                            max_file_size=MAX_UPLOAD)  # fmt: skip
    return page, url


def port_number(text: str) -> int:
    """``--port``: a TCP port, 1 to 65535 (argparse reports anything else as one line)."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (1 to 65535)") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port number (1 to 65535)")
    return port


def app_main(argv: list[str]) -> None:
    parser = CommandParser(prog="t2igan app",
                           description="GAWWN's what-and-where drawing as a local web page.")  # fmt: skip
    parser.add_argument("--ckpt", required=True,
                        help="a GAWWN checkpoint (GAWWNKeypoints or GAWWNBox)")  # fmt: skip
    parser.add_argument("--keypoint-generator", default=None,
                        help="a GAWWNKeypointGenerator checkpoint: completes missing keypoints")  # fmt: skip
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda, ...)")
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on")
    parser.add_argument("--port", type=port_number, default=7860, help="port to serve on")
    a = parser.parse_args(argv)
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise ValueError("the page needs Gradio: pip install 't2igan[app]'") from None
    session = Session(a.ckpt, a.keypoint_generator, a.device)
    print(f"t2igan app: serving {type(session.model).__name__} on http://{a.host}:{a.port}")
    serve(session, a.host, a.port)
