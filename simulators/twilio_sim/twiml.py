"""Reads the TwiML the hub answers with: what <Say> says, the <Gather>, <Message> replies."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field


class TwimlError(ValueError):
    """The document is not TwiML (not XML, or no <Response> root)."""


@dataclass(frozen=True)
class Said:
    """One <Say>: the text and how it was to be spoken."""

    text: str
    language: str | None = None
    voice: str | None = None


@dataclass(frozen=True)
class Gather:
    """The first <Gather> of a document: where keypresses go."""

    action: str | None
    method: str
    num_digits: int | None
    timeout_s: float


@dataclass(frozen=True)
class Reply:
    """One <Message> of a messaging response."""

    body: str
    to: str | None = None
    from_: str | None = None
    action: str | None = None


@dataclass(frozen=True)
class Document:
    """What the simulator needs from one TwiML document."""

    said: tuple[Said, ...] = ()
    gather: Gather | None = None
    replies: tuple[Reply, ...] = ()
    redirect: str | None = None
    hangup: bool = False
    verbs: tuple[str, ...] = field(default=())


def looks_like_twiml(text: str) -> bool:
    """A cheap check before parsing: an XML document or a bare <Response>."""
    head = text.lstrip()[:200]
    return head.startswith("<?xml") or head.startswith("<Response")


def parse(text: str) -> Document:
    """Parse a TwiML document; raises ``TwimlError`` if it is not one."""
    try:
        root = ET.fromstring(text.strip())
    except ET.ParseError as exc:
        raise TwimlError(f"not XML: {exc}") from exc
    if root.tag != "Response":
        raise TwimlError(f"the root element is <{root.tag}>, not <Response>")
    said: list[Said] = []
    replies: list[Reply] = []
    verbs: list[str] = []
    gather: Gather | None = None
    redirect: str | None = None
    hangup = False
    for verb in root:
        verbs.append(verb.tag)
        if verb.tag == "Say":
            said.append(_said(verb))
        elif verb.tag == "Gather":
            if gather is None:
                gather = _gather(verb)
            said.extend(_said(child) for child in verb if child.tag == "Say")
        elif verb.tag == "Message":
            replies.append(_reply(verb))
        elif verb.tag == "Redirect" and redirect is None:
            redirect = (verb.text or "").strip() or None
        elif verb.tag == "Hangup":
            hangup = True
    return Document(
        said=tuple(said),
        gather=gather,
        replies=tuple(replies),
        redirect=redirect,
        hangup=hangup,
        verbs=tuple(verbs),
    )


def _said(element: ET.Element) -> Said:
    text = " ".join("".join(element.itertext()).split())
    return Said(text=text, language=element.get("language"), voice=element.get("voice"))


def _gather(element: ET.Element) -> Gather:
    num_digits = element.get("numDigits")
    timeout = element.get("timeout")
    return Gather(
        action=element.get("action"),
        method=(element.get("method") or "POST").upper(),
        num_digits=int(num_digits) if num_digits and num_digits.isdigit() else None,
        timeout_s=float(timeout) if timeout and timeout.isdigit() else 5.0,
    )


def _reply(element: ET.Element) -> Reply:
    body_element = element.find("Body")
    source = body_element if body_element is not None else element
    body = "".join(source.itertext()).strip()
    return Reply(
        body=body, to=element.get("to"), from_=element.get("from"), action=element.get("action")
    )
