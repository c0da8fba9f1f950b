"""`headshot models tiny` and `headshot models licences`: tiny random models to try things, and what may be used."""

from pathlib import Path
from typing import Annotated

import typer

from service.cli.common import console, group, reports_errors

models_app = group(
    "models",
    "Models: tiny random ones for tests and demos, and the licence of each model part "
    "(insightface packs: non-commercial research only; IP-Adapter FaceID: research only).",
)


@models_app.command("tiny")
@reports_errors
def models_tiny(directory: Annotated[Path, typer.Argument(metavar="DIR", help="Where to write the models.")]) -> None:
    """Write tiny random models (SDXL, IP-Adapter FaceID, insightface-shaped pack): for tests and demos only."""
    from generation.tiny import write_tiny_model
    from generation.tiny_faceid import write_tiny_faceid_adapter

    write_tiny_model(directory)
    write_tiny_faceid_adapter(directory / "ip-adapter-faceid", directory)
    console.print(
        f"wrote a tiny random SDXL model to {directory} (and {directory / 'tiny-sdxl.safetensors'}) and a tiny "
        f"random IP-Adapter FaceID to {directory / 'ip-adapter-faceid'}; they produce noise, not faces: use them "
        "to try the pipeline, not to make headshots",
        highlight=False,
    )
    try:
        from scoring.tiny_insightface import write_tiny_insightface_pack
    except ImportError:
        console.print('no tiny insightface pack: it needs onnx (`pip install -e ".[insightface]"`)', highlight=False)
        return
    write_tiny_insightface_pack(directory / "insightface")
    console.print(
        f"wrote a tiny insightface-shaped pack to {directory / 'insightface'} (it recognises nobody); try "
        f"HEADSHOT_INSIGHTFACE_PACK={directory / 'insightface'} headshot pack --model {directory} "
        f"--identity faceid --ip-adapter {directory / 'ip-adapter-faceid'} --reference PHOTO --out OUT",
        highlight=False,
    )


@models_app.command("licences")
def models_licences() -> None:
    """The licence of each model part headshot can use: choose the identity method knowingly."""
    from generation.faceid import LICENCES

    for part, licence in LICENCES.items():
        console.print(f"{part}: {licence}", highlight=False, markup=False)
