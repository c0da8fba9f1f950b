"""Unsigned metadata that may declare AI generation: XMP, EXIF and PNG text chunks."""

import json
import re
from dataclasses import dataclass, field

from PIL import Image

from provenance.evidence import Evidence

# IPTC digital source types (http://cv.iptc.org/newscodes/digitalsourcetype/), by their last path segment.
AI_SOURCE_TYPES = {"trainedAlgorithmicMedia", "compositeWithTrainedAlgorithmicMedia"}
CAPTURE_SOURCE_TYPES = {"digitalCapture", "computationalCapture", "negativeFilm", "positiveFilm", "print"}

KNOWN_GENERATORS = re.compile(
    r"stable[\s_-]?diffusion|\bsdxl\b|midjourney|dall[\s·-]?e|firefly|\bimagen\b|comfyui|automatic1111|"
    r"invokeai|novelai|fooocus|leonardo\.ai|ideogram|\bflux(\.1)?\b|gpt-image|craiyon|nightcafe|dreamstudio|"
    r"\bheadshot \d",
    re.IGNORECASE,
)
_EXIF_TAGS = {
    0x010E: "ImageDescription",
    0x010F: "Make",
    0x0110: "Model",
    0x0131: "Software",
    0x013B: "Artist",
}
_XMP_FIELDS = ("DigitalSourceType", "CreatorTool", "DataMining", "Credit", "Description")
_MAX_TEXT = 500


@dataclass
class MetadataReport:
    fields: dict = field(default_factory=dict)
    evidence: list[Evidence] = field(default_factory=list)

    @property
    def declares_ai(self) -> bool:
        return bool(self.evidence)


def source_type_name(value: str | None) -> str | None:
    return value.rstrip("/").rsplit("/", 1)[-1] if value else None


def read_metadata(image: Image.Image) -> MetadataReport:
    report = MetadataReport()
    _read_xmp(image, report)
    _read_exif(image, report)
    if image.format == "PNG":
        _read_png_text(image, report)
    return report


def _read_xmp(image: Image.Image, report: MetadataReport) -> None:
    raw = image.info.get("xmp") or image.info.get("XML:com.adobe.xmp")
    if not raw:
        return
    values = _xmp_values(raw)
    if values is None:
        report.fields["xmp"] = {"error": "the XMP packet is not well-formed XML"}
        return
    xmp = {name: values[name] for name in _XMP_FIELDS if name in values}
    report.fields["xmp"] = xmp
    source_type = source_type_name(xmp.get("DigitalSourceType"))
    if source_type in AI_SOURCE_TYPES:
        report.evidence.append(Evidence("xmp", f"XMP declares the IPTC digital source type '{source_type}'", "strong"))
    tool = xmp.get("CreatorTool", "")
    if KNOWN_GENERATORS.search(tool):
        report.evidence.append(Evidence("xmp", f"XMP CreatorTool names an AI generator: {tool!r}", "weak"))


def _xmp_values(raw: bytes | str) -> dict[str, str] | None:
    """Flatten an XMP packet to {local name: first value}, from attributes and element text alike."""
    from xml.etree.ElementTree import ParseError

    from defusedxml import DefusedXmlException
    from defusedxml.ElementTree import fromstring

    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    start, end = text.find("<x:xmpmeta"), text.rfind("</x:xmpmeta>")
    if start >= 0 and end > start:
        text = text[start : end + len("</x:xmpmeta>")]
    try:
        root = fromstring(text)
    except (ParseError, DefusedXmlException, ValueError):
        return None
    values: dict[str, str] = {}
    for element in root.iter():
        for name, value in element.attrib.items():
            values.setdefault(_local(name), value[:_MAX_TEXT])
        content = (element.text or "").strip() or element.attrib.get(
            "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}resource", ""
        )
        if content:
            values.setdefault(_local(element.tag), content[:_MAX_TEXT])
        # rdf:li children (Alt/Seq/Bag) carry the value of their grandparent property
        for container in element:
            for item in container:
                if _local(item.tag) == "li" and (item.text or "").strip():
                    values.setdefault(_local(element.tag), item.text.strip()[:_MAX_TEXT])
    return values


def _local(name: str) -> str:
    return name.rsplit("}", 1)[-1].rsplit(":", 1)[-1]


def _read_exif(image: Image.Image, report: MetadataReport) -> None:
    try:
        exif = image.getexif()
    except Exception:  # Pillow raises many types on malformed EXIF; it is unsigned metadata, so skip it
        report.fields["exif"] = {"error": "the EXIF block is malformed"}
        return
    fields = {name: str(exif[tag]).strip("\x00 ")[:_MAX_TEXT] for tag, name in _EXIF_TAGS.items() if exif.get(tag)}
    if not fields:
        return
    report.fields["exif"] = fields
    for name, value in fields.items():
        if KNOWN_GENERATORS.search(value):
            report.evidence.append(Evidence("exif", f"EXIF {name} names an AI generator: {value!r}", "weak"))


def _read_png_text(image: Image.Image, report: MetadataReport) -> None:
    chunks = {key: value for key, value in image.info.items() if isinstance(value, str) and key != "XML:com.adobe.xmp"}
    if not chunks:
        return
    report.fields["png_text"] = {key: value[:_MAX_TEXT] for key, value in chunks.items()}
    parameters = chunks.get("parameters", "")
    if re.search(r"\bSteps:\s*\d+", parameters) and re.search(r"\b(Sampler|Seed|CFG scale):", parameters):
        report.evidence.append(
            Evidence(
                "png-text",
                "PNG 'parameters' chunk holds Stable Diffusion generation settings (steps, sampler, seed)",
                "strong",
            )
        )
    if _is_comfyui_graph(chunks.get("prompt")) or _is_comfyui_graph(chunks.get("workflow")):
        report.evidence.append(Evidence("png-text", "PNG text holds a ComfyUI generation graph", "strong"))
    for key, value in chunks.items():
        match = KNOWN_GENERATORS.search(value)
        if match and key not in ("parameters", "prompt", "workflow"):
            report.evidence.append(
                Evidence("png-text", f"PNG text chunk {key!r} names an AI generator: {match[0]!r}", "weak")
            )


def _is_comfyui_graph(text: str | None) -> bool:
    if not text:
        return False
    try:
        graph = json.loads(text)
    except ValueError:
        return False
    nodes = graph.get("nodes", graph.values()) if isinstance(graph, dict) else []
    return any(isinstance(node, dict) and ("class_type" in node or "type" in node) for node in nodes)
