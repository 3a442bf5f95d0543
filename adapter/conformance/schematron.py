"""Compile ISO Schematron (CI-SIS, XSLT 2 query binding) to XSLT once, then run it with Saxon.

The compiler is the ISO skeleton that lxml ships (include → abstract-expand → svrl). It is written
for XSLT 1 and refuses `queryBinding="xslt2"`, so the binding is rewritten in memory; Saxon then
evaluates the XPath 2 tests of the generated stylesheet. The generated stylesheet carries
`xml:base` = the schematron's own URI, so the relative value-set paths it opens at run time
(`../jeuxDeValeurs/…`) resolve inside the (possibly read-only) CI-SIS folder: nothing is copied.
Generated stylesheets are cached on disk under a hash of every source file they were built from,
and kept compiled in memory for the life of the process.
"""

from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import lxml.isoschematron
from lxml import etree
from saxonche import PySaxonProcessor, PyXdmNode, PyXsltExecutable

SCH_NS = "http://purl.oclc.org/dsdl/schematron"
SVRL_NS = "http://purl.oclc.org/dsdl/svrl"
_XML_BASE = "{http://www.w3.org/XML/1998/namespace}base"
_SKELETON = Path(lxml.isoschematron.__file__).parent / "resources/xsl/iso-schematron-xslt1"
_COMPILER_STEPS = ("iso_dsdl_include.xsl", "iso_abstract_expand.xsl", "iso_svrl_for_xslt1.xsl")
_CACHE_FORMAT = "liaison-sch-2"  # bump when the way stylesheets are generated changes

# Saxon objects are not thread-safe; one processor per process, used under one lock.
_lock = threading.RLock()
_processor: PySaxonProcessor | None = None
_executables: dict[str, PyXsltExecutable] = {}
_keys: dict[Path, str] = {}


class SchematronError(Exception):
    """A schematron that cannot be compiled (missing include, unreadable source)."""


@dataclass(frozen=True)
class Assertion:
    """One failed assert or successful report of a schematron run (SVRL)."""

    location: str
    message: str
    test: str
    role: str  # "error" | "warning" | "info" as declared by the schematron (default error)
    rule_id: str | None


def _saxon() -> PySaxonProcessor:
    global _processor
    if _processor is None:
        _processor = PySaxonProcessor(license=False)
    return _processor


def _safe_parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


def _resolve_include(base: Path, href: str) -> Path:
    """The file an include points to; the official tree has a few case mismatches (written on
    Windows), so an exact miss falls back to the one file whose name matches ignoring case."""
    target = (base.parent / href).resolve()
    if target.exists() or not target.parent.is_dir():
        return target
    same_name = [p for p in target.parent.iterdir() if p.name.lower() == target.name.lower()]
    return same_name[0] if len(same_name) == 1 else target


def _sources(sch: Path) -> list[Path]:
    """The schematron and every file it includes, transitively (for the cache key)."""
    seen: list[Path] = []
    pending = [sch.resolve()]
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        if not current.is_file():
            raise SchematronError(f"schematron include not found: {current}")
        seen.append(current)
        tree = etree.parse(str(current), _safe_parser())
        for include in tree.iter(f"{{{SCH_NS}}}include"):
            pending.append(_resolve_include(current, include.get("href", "")))
    return seen


def _cache_key(sch: Path, sources: list[Path]) -> str:
    digest = hashlib.sha256(_CACHE_FORMAT.encode())
    digest.update(str(sch.resolve()).encode())  # xml:base makes the output location-dependent
    for step in _COMPILER_STEPS:
        digest.update((_SKELETON / step).read_bytes())
    for source in sorted(sources):
        digest.update(str(source).encode() + b"\0" + source.read_bytes())
    return digest.hexdigest()


def _transform(stylesheet: str, document_text: str) -> str:
    saxon = _saxon()
    executable = saxon.new_xslt30_processor().compile_stylesheet(
        stylesheet_file=str(_SKELETON / stylesheet)
    )
    return executable.transform_to_string(xdm_node=saxon.parse_xml(xml_text=document_text))


_XSL = "http://www.w3.org/1999/XSL/Transform"
_ROOTS_VARIABLE = "liaison-template-roots"
# a predicate requiring a templateId child with a given root: `[cda:templateId/@root="X"]`
_TEMPLATE_PREDICATE = re.compile(r"\[\s*cda:templateId/@root\s*=\s*(['\"])([^'\"]+)\1\s*\]")
# anything that could turn that predicate into something other than a necessary condition
_NEGATIONS = ("not(", " or ", "count(", "empty(", "!=", "except", "every ", "some ", "if ", "|")


def _required_root(alternative: str) -> str | None:
    """A templateId root the document must contain for this match pattern to match anything."""
    found = _TEMPLATE_PREDICATE.search(alternative)
    if found is None or any(negation in alternative for negation in _NEGATIONS):
        return None
    return found.group(2)


def _pattern_conditions(stylesheet: etree._Element) -> dict[str, set[str]]:
    """mode → templateId roots, one of which the document must contain for any of the mode's
    rules to fire; modes with a rule that could fire anyway are left out."""
    roots: dict[str, set[str]] = {}
    unconditional: set[str] = set()
    for template in stylesheet.iterfind(f"{{{_XSL}}}template"):
        mode, match = template.get("mode", ""), template.get("match", "")
        if not re.fullmatch(r"M\d+", mode) or float(template.get("priority", "0")) < 0:
            continue  # the skeleton's own traversal templates
        required = [_required_root(alternative) for alternative in match.split("|")]
        if None in required:
            unconditional.add(mode)
        else:
            roots.setdefault(mode, set()).update(r for r in required if r)
    return {mode: found for mode, found in roots.items() if mode not in unconditional}


def skip_irrelevant_patterns(stylesheet: etree._Element) -> int:
    """Run a pattern only when the document holds a templateId its rules require.

    The skeleton walks the whole document once per pattern; most CI-SIS patterns check one
    section or entry template (`*[cda:templateId/@root="…"]`) that a given letter does not
    contain. Skipping those walks changes no verdict (their rules could not fire) and divides
    the run time. Returns how many patterns became conditional.
    """
    conditions = _pattern_conditions(stylesheet)
    if not conditions:
        return 0
    variable = etree.Element(f"{{{_XSL}}}variable", name=_ROOTS_VARIABLE)
    variable.set("select", "distinct-values(//*[local-name() = 'templateId']/@root)")
    first_template = stylesheet.find(f"{{{_XSL}}}template")
    (first_template if first_template is not None else stylesheet[-1]).addprevious(variable)
    wrapped = 0
    for call in list(stylesheet.iter(f"{{{_XSL}}}apply-templates")):
        mode = call.get("mode", "")
        if call.get("select") != "/" or mode not in conditions:
            continue
        listed = ", ".join(f"'{root}'" for root in sorted(conditions[mode]))
        guard = etree.Element(f"{{{_XSL}}}if", test=f"${_ROOTS_VARIABLE} = ({listed})")
        call.addprevious(guard)
        guard.append(call)  # moves the call inside the guard
        wrapped += 1
    return wrapped


def generate_stylesheet(sch: Path, *, optimize: bool = True) -> str:
    """Schematron → validating XSLT (SVRL output), as text."""
    sch = sch.resolve()
    schema = etree.parse(str(sch), _safe_parser()).getroot()
    schema.set("queryBinding", "xslt")  # get past the XSLT 1 skeleton's guard; Saxon runs XPath 2
    for include in schema.iter(f"{{{SCH_NS}}}include"):
        # absolute URIs: the text handed to Saxon has no base URI of its own
        include.set("href", _resolve_include(sch, include.get("href", "")).as_uri())
    text = etree.tostring(schema, encoding="unicode")
    for step in _COMPILER_STEPS:
        text = _transform(step, text)
    stylesheet = etree.fromstring(text.encode("utf-8"), _safe_parser())
    stylesheet.set(_XML_BASE, sch.as_uri())
    if optimize:
        skip_irrelevant_patterns(stylesheet)
    return etree.tostring(stylesheet, encoding="unicode")


def compiled(sch: Path, cache_dir: Path) -> PyXsltExecutable:
    """The executable stylesheet for a schematron: memory, else disk cache, else compile."""
    with _lock:
        key = _keys.get(sch)
        if key is None:
            # hashing hundreds of includes costs more than a run: once per process is enough
            key = _keys[sch] = _cache_key(sch, _sources(sch))
        if key in _executables:
            return _executables[key]
        cached = cache_dir / f"{sch.stem}-{key[:20]}.xsl"
        if cached.is_file():
            text = cached.read_text(encoding="utf-8")
        else:
            try:
                text = generate_stylesheet(sch)
            except Exception as error:  # Saxon raises its own PySaxonApiError
                raise SchematronError(f"cannot compile {sch.name}: {error}") from error
            cache_dir.mkdir(parents=True, exist_ok=True)
            partial = cached.with_suffix(".tmp")
            partial.write_text(text, encoding="utf-8")
            partial.replace(cached)  # atomic: a concurrent reader never sees half a file
        executable = _saxon().new_xslt30_processor().compile_stylesheet(stylesheet_text=text)
        _executables[key] = executable
        return executable


def parse_for_saxon(xml_text: str) -> PyXdmNode:
    """Hand an already safely-parsed document to Saxon (no DTD left to resolve)."""
    with _lock:
        return _saxon().parse_xml(xml_text=xml_text)


_NAMESPACED_STEPS = (
    re.compile(r"\*:([\w.-]+)\[namespace-uri\(\)='urn:hl7-org:v3'\]"),
    re.compile(r"\*\[local-name\(\)='([\w.-]+)' and namespace-uri\(\)='urn:hl7-org:v3'\]"),
)


def readable_location(location: str) -> str:
    """`/*[local-name()='section' and namespace-uri()='urn:hl7-org:v3'][2]` → `/cda:section[2]`."""
    for step in _NAMESPACED_STEPS:
        location = step.sub(r"cda:\1", location)
    return location


def run(executable: PyXsltExecutable, document: PyXdmNode) -> list[Assertion]:
    """Run a compiled schematron on a document; return its failed asserts and reports."""
    with _lock:
        svrl = executable.transform_to_string(xdm_node=document)
    report = etree.fromstring(svrl.encode("utf-8"), _safe_parser())
    findings: list[Assertion] = []
    rule_id: str | None = None
    for node in report:
        if node.tag == f"{{{SVRL_NS}}}fired-rule":
            rule_id = node.get("id")
        elif node.tag in (f"{{{SVRL_NS}}}failed-assert", f"{{{SVRL_NS}}}successful-report"):
            text = node.find(f"{{{SVRL_NS}}}text")
            message = " ".join("".join(text.itertext() if text is not None else []).split())
            findings.append(
                Assertion(
                    location=readable_location(node.get("location", "")),
                    message=message,
                    test=node.get("test", ""),
                    role=(node.get("role") or "error").lower(),
                    rule_id=rule_id,
                )
            )
    return findings
