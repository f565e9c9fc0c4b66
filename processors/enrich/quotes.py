"""Attributed quotes: each quote's text and its speaker. Pure regular expressions over the text;
the person mentions come from NER (``entities.py``) and are only used to resolve speakers.

Patterns (English news style), tried in this order for every quote:

1. after the quote   ``“…,” Kirby said.`` / ``“…,” John Kirby, the Pentagon spokesperson, said.`` /
                     ``“…,” said Kirby.`` / ``“…,” Kirby added.`` / ``“…,” he said.``
2. before the quote  ``Jen Psaki, the White House press secretary, said: “…”`` / ``Kirby told reporters, “…”``
3. split quote       ``“…,” Kirby said, “…”`` -> one quote, both halves joined;
4. ``according to``  ``“…”, according to a White House account``
5. reported speech   ``Macron said he had fulfilled his aim of “…”`` (the sentence's subject is the speaker)
6. no attribution    a quote that is a whole sentence continues the previous quote's speaker when no
                     other person was named in between, else takes the person named in the previous
                     sentence (``Kirby was asked about Poland. “…”``). Mid-sentence scare quotes with no
                     attribution are not quotes.

Speakers resolve to the article's full person names: pronouns to the last person named before the
quote (outside quotes); short names through the NER aliases ("Kirby" -> "John Kirby"); roles
("the French president", "the spokesperson") through appositions and pre-modifiers found in the
same article ("French president Emmanuel Macron", "John Kirby, the Pentagon spokesperson,").
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

MAX_QUOTES = 50
MIN_WORDS = 2

VERBS = (
    "said|says|say|added|adds|told|tells|asked|asks|stated|states|explained|explains|noted|notes|"
    "wrote|writes|argued|argues|insisted|insists|warned|warns|declared|declares|claimed|claims|"
    "continued|continues|replied|replies|responded|responds|acknowledged|acknowledges|admitted|"
    "admits|recalled|recalls|urged|urges|cautioned|cautions|observed|remarked|announced|announces|"
    "confirmed|confirms|tweeted|posted|suggested|suggests|emphasised|emphasized|stressed|stresses|"
    "concluded|commented|called|pledged|promised|vowed|vows|predicted|predicts|conceded|concedes|"
    "joked|jokes|complained|complains|agreed|agrees|recounted|described|describes|put it|puts it"
)
_NAME_TOKEN = r"(?:[A-Z][\w’'.-]*|de|da|del|der|van|von|bin|al|al-\w+|la|le|du|dos|di)"
NAME = rf"(?:[A-Z][\w’'.-]*(?:\s+{_NAME_TOKEN}){{0,4}})"
PRONOUN = r"(?:he|she|they|He|She|They)"
ROLE = r"(?:(?:the|a|an|The|A|An)\s+[^,.;:“”\"«»]{2,60}?)"
APPOSITION = r"(?:,\s+[^,“”\"«»]{2,120}?,)"
AUX = r"(?:(?:has|had|have|also|then|later|again|previously|once)\s+)*"
SPEAKER = rf"(?:{NAME}|{PRONOUN}|{ROLE})"

# 1. after the quote: `, Kirby said.` / `, said Kirby` / `, John Kirby, the spokesperson, said`
AFTER_SUBJECT = re.compile(rf"^\s*[,;:]?\s*(?P<sp>{SPEAKER})\s*{APPOSITION}?\s+{AUX}(?P<v>{VERBS})\b")
AFTER_INVERTED = re.compile(rf"^\s*[,;:]?\s*(?P<v>{VERBS})\s+(?P<sp>{NAME}|{ROLE})(?=\s*[,.;:!?]|\s*$)")
# 2. before the quote: `Jen Psaki, the press secretary, said: ` / `Kirby told reporters, `
BEFORE = re.compile(
    rf"(?P<sp>{SPEAKER})\s*{APPOSITION}?\s+{AUX}(?P<v>{VERBS})\b"
    rf"(?:\s+(?:reporters|journalists|the\s+\w+|in\s+[^:“”\"]{{1,60}}|on\s+[^:“”\"]{{1,40}}|at\s+[^:“”\"]{{1,40}}))?"
    r"\s*[:,]?\s*$"
)
# 4. `according to X`
ACCORDING = re.compile(rf"according\s+to\s+(?:an?\s+|the\s+)?(?P<sp>{NAME})")
# 5. reported speech with an embedded quote: the last `Name <≤4 words> said` before the quote.
REPORTED = re.compile(rf"(?P<sp>{NAME}|{PRONOUN})(?:\s+[a-z]+){{0,4}}?\s+{AUX}(?P<v>{VERBS})\b")

_PAIRS = {"“": "”", "«": "»", "„": "“", "\"": "\""}
_ALT_CLOSE = {"„": "”"}
_BOUNDARY = re.compile(
    r"(?<!\bMr)(?<!\bMrs)(?<!\bMs)(?<!\bDr)(?<!\bSt)(?<!\bNo)(?<!\bU\.S)(?<!\b[A-Z])"
    r"[.!?]+[\"”’»)]*(?=\s+[\"“‘«(]?[A-Z0-9])"
)
ROLE_NOUNS = {
    "president", "minister", "secretary", "spokesperson", "spokesman", "spokeswoman", "chancellor",
    "chief", "leader", "governor", "senator", "ambassador", "director", "chairman", "chairwoman",
    "chair", "ceo", "official", "commander", "general", "mayor", "prosecutor", "judge", "coach",
    "founder", "executive", "economist", "analyst", "professor", "researcher", "lawyer", "attorney",
    "representative", "envoy", "premier", "king", "queen", "head", "manager", "captain", "adviser",
    "advisor", "counsel", "negotiator", "commissioner", "spokesperson", "officer",
}
_ROLE_BEFORE = re.compile(r"((?:[A-Z][a-z]+\s+)?(?:[a-z]+\s+){0,2}[a-z]+)\s+$")
_ROLE_AFTER = re.compile(r"^,\s+(?:the|a|an)\s+([^,.;“”\"]{3,60}?),")
_DETERMINER = re.compile(r"^(?:the|a|an)\s+", re.IGNORECASE)
_TITLE = re.compile(
    r"^(?:(?:Mr|Mrs|Ms|Dr|Prof|Sir|Dame|President|Prime\s+Minister|Chancellor|Secretary|Senator|Sen|"
    r"Rep|Gov|Governor|Gen|General|Mayor|Judge|Justice|King|Queen|Pope|Ambassador)\.?\s+)+"
)


@dataclass(frozen=True)
class Span:
    open: int  # index of the opening mark
    close: int  # index of the closing mark, or the paragraph end when unclosed
    paragraph: int

    def text(self, text: str) -> str:
        return text[self.open + 1 : self.close]


@dataclass(frozen=True)
class FoundQuote:
    text: str
    speaker: str | None
    speaker_raw: str | None
    start: int
    how: str  # which rule attributed it (provenance, tests)


@dataclass
class People:
    """Person mentions (start, end, canonical name) from NER, and short-form aliases."""

    mentions: list[tuple[int, int, str]] = field(default_factory=list)
    aliases: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_names(cls, text: str, names: list[str]) -> People:
        """For tests and plain use: find each name (and its last name) in the text."""
        from processors.enrich.entities import person_aliases

        aliases = person_aliases(names)
        for n in names:
            aliases.setdefault(n.casefold(), n)
        forms = sorted(aliases, key=len, reverse=True)
        pattern = re.compile(r"\b(" + "|".join(re.escape(f) for f in forms) + r")\b", re.IGNORECASE) if forms else None
        found = [] if pattern is None else [(m.start(), m.end(), aliases[m.group(1).casefold()]) for m in pattern.finditer(text)]
        return cls(found, aliases)


def paragraphs(text: str) -> list[tuple[int, int]]:
    out, pos = [], 0
    for line in text.split("\n"):
        out.append((pos, pos + len(line)))
        pos += len(line) + 1
    return out


def quote_spans(text: str) -> list[Span]:
    """Quotes per paragraph. An unclosed quote runs to the end of its paragraph (the
    multi-paragraph convention: the next paragraph reopens it)."""
    spans: list[Span] = []
    for p, (start, end) in enumerate(paragraphs(text)):
        i = start
        while i < end:
            ch = text[i]
            if ch in _PAIRS and not (ch == "\"" and i > start and text[i - 1].isalnum()):
                closer = _PAIRS[ch]
                j = text.find(closer, i + 1, end)
                alt = _ALT_CLOSE.get(ch)
                if alt is not None:
                    k = text.find(alt, i + 1, end)
                    j = k if j < 0 or (0 <= k < j) else j
                close = j if j >= 0 else end
                spans.append(Span(i, close, p))
                i = close + 1
            else:
                i += 1
    return spans


def sentence_bounds(text: str, spans: list[Span], start: int, end: int) -> list[tuple[int, int]]:
    """Sentences of text[start:end]; terminators inside quotes do not end a sentence."""
    masked = list(text[start:end])
    for s in spans:
        if start <= s.open < end:
            for k in range(s.open + 1 - start, min(s.close, end) - start):
                masked[k] = "x"
    chunk = "".join(masked)
    bounds, cur = [], 0
    for m in _BOUNDARY.finditer(chunk):
        bounds.append((start + cur, start + m.end()))
        cur = m.end()
    bounds.append((start + cur, end))
    return [(a, b) for a, b in bounds if text[a:b].strip()]


def _words(s: str) -> int:
    return len(re.findall(r"\w+", s))


def _clean_quote(s: str) -> str:
    s = re.sub(r"\s+", " ", s).strip()
    return s[:-1].rstrip() if s.endswith(",") else s


def _roles(text: str, people: People) -> dict[str, str]:
    """role (lower case, no determiner) -> person, from the article's own wording."""
    roles: dict[str, set[str]] = {}
    for start, end, name in people.mentions:
        m = _ROLE_BEFORE.search(text[max(0, start - 60) : start])
        if m and m.group(1).split()[-1].casefold() in ROLE_NOUNS:
            roles.setdefault(m.group(1).casefold(), set()).add(name)
        m = _ROLE_AFTER.match(text[end : end + 80])
        if m and m.group(1).split()[-1].casefold() in ROLE_NOUNS:
            roles.setdefault(m.group(1).casefold(), set()).add(name)
    return {r: names.pop() for r, names in roles.items() if len(names) == 1}


class _Resolver:
    def __init__(self, text: str, people: People, spans: list[Span]):
        self.text = text
        self.people = people
        self.roles = _roles(text, people)
        self.spans = spans

    def inside_quote(self, pos: int) -> bool:
        return any(s.open < pos < s.close for s in self.spans)

    def last_person_before(self, pos: int, since: int = 0) -> str | None:
        best = None
        for start, _end, name in self.people.mentions:
            if since <= start < pos and not self.inside_quote(start):
                best = name
        return best

    def resolve(self, raw: str, at: int) -> tuple[str | None, str]:
        raw = re.sub(r"\s+", " ", raw).strip().rstrip(",")
        if re.fullmatch(PRONOUN, raw):
            return self.last_person_before(at), raw
        if re.match(r"(?:the|a|an)\s", raw, re.IGNORECASE):
            role = _DETERMINER.sub("", raw).casefold()
            if role in self.roles:
                return self.roles[role], raw
            head = role.split()[-1] if role.split() else ""
            owners = {p for r, p in self.roles.items() if r.split()[-1] == head} if head in ROLE_NOUNS else set()
            return (owners.pop() if len(owners) == 1 else None), raw
        name = _TITLE.sub("", raw)
        name = re.sub(r"(?:['’]s)$", "", name)
        name = re.sub(r"(?<=\w\w)\.$", "", name)  # sentence full stop, not an initial ("J.")
        resolved = self.people.aliases.get(name.casefold())
        return (resolved or name or None), raw


def find_quotes(text: str, people: People) -> list[FoundQuote]:
    spans = [s for s in quote_spans(text) if _words(s.text(text)) >= MIN_WORDS]
    if not spans:
        return []
    resolver = _Resolver(text, people, spans)
    paras = paragraphs(text)
    sentences = {p: sentence_bounds(text, spans, a, b) for p, (a, b) in enumerate(paras) if any(s.paragraph == p for s in spans)}
    out: list[FoundQuote] = []
    last_end_by_para: dict[int, int] = {}
    for idx, span in enumerate(spans):
        p_start, p_end = paras[span.paragraph]
        sent = next(((a, b) for a, b in sentences[span.paragraph] if a <= span.open < b), (p_start, p_end))
        prev_close = last_end_by_para.get(span.paragraph, p_start - 1)
        before = text[max(sent[0], prev_close + 1) : span.open]
        next_open = next((s.open for s in spans[idx + 1 :] if s.paragraph == span.paragraph), p_end)
        after = text[min(span.close + 1, p_end) : min(sent[1], next_open)] if span.close < p_end else ""
        last_end_by_para[span.paragraph] = span.close
        quote = _clean_quote(span.text(text))
        found = _attribute(quote, span, before, after, resolver)
        if found is None and not before.strip() and not after.strip(" .,!?;:"):
            found = _orphan(quote, span, _previous_sentence(text, spans, paras, span.paragraph, sent[0]), out, resolver)
        if found is None:
            continue
        if out and found.how == "before" and _is_split(out[-1], span, spans, idx, text):
            prev = out.pop()
            found = FoundQuote(f"{prev.text} {quote}", prev.speaker, prev.speaker_raw, prev.start, "split")
        out.append(found)
        if len(out) >= MAX_QUOTES:
            break
    return out


def _attribute(quote: str, span: Span, before: str, after: str, r: _Resolver) -> FoundQuote | None:
    for how, pattern, where in (("after", AFTER_SUBJECT, after), ("after", AFTER_INVERTED, after)):
        m = pattern.match(where)
        if m:
            speaker, raw = r.resolve(m.group("sp"), span.open)
            return FoundQuote(quote, speaker, raw, span.open, how)
    m = BEFORE.search(before)
    if m:
        speaker, raw = r.resolve(m.group("sp"), span.open)
        return FoundQuote(quote, speaker, raw, span.open, "before")
    m = ACCORDING.search(after) or ACCORDING.search(before)
    if m:
        speaker, raw = r.resolve(m.group("sp"), span.open)
        return FoundQuote(quote, speaker, raw, span.open, "according")
    reported = list(REPORTED.finditer(before))
    if reported:
        m = reported[-1]
        speaker, raw = r.resolve(m.group("sp"), span.open)
        return FoundQuote(quote, speaker, raw, span.open, "reported")
    return None


def _previous_sentence(text: str, spans: list[Span], paras: list[tuple[int, int]], p: int, start: int) -> tuple[int, int]:
    """The sentence before the one starting at ``start``: in the same paragraph, else the last
    sentence of the nearest non-empty paragraph before."""
    own = [(a, b) for a, b in sentence_bounds(text, spans, *paras[p]) if b <= start]
    if own:
        return own[-1]
    for q in range(p - 1, -1, -1):
        prev = sentence_bounds(text, spans, *paras[q])
        if prev:
            return prev[-1]
    return (0, 0)


def _orphan(quote: str, span: Span, previous: tuple[int, int], out: list[FoundQuote], r: _Resolver) -> FoundQuote:
    """A whole-sentence quote with no attribution of its own (rule 6)."""
    if out:
        prev = out[-1]
        if prev.speaker and r.last_person_before(span.open, since=prev.start + 1) in (None, prev.speaker):
            return FoundQuote(quote, prev.speaker, prev.speaker_raw, span.open, "continued")
    name = r.last_person_before(previous[1], since=previous[0])
    if name:
        return FoundQuote(quote, name, name, span.open, "previous-sentence")
    return FoundQuote(quote, None, None, span.open, "unattributed")


def _is_split(prev: FoundQuote, span: Span, spans: list[Span], idx: int, text: str) -> bool:
    """`“A,” X said, “B”`: the text between the two quotes is only the attribution."""
    if idx == 0 or prev.how not in ("after",):
        return False
    prev_span = spans[idx - 1]
    if prev_span.paragraph != span.paragraph or prev_span.open != prev.start:
        return False
    between = text[prev_span.close + 1 : span.open]
    m = AFTER_SUBJECT.match(between) or AFTER_INVERTED.match(between)
    return bool(m) and re.fullmatch(r"\s*,\s*", between[m.end():] or ",") is not None
