"""How much a response answers its request, from the text alone: the `answer` factor of the reward.

Why it exists: a reward that checks only the constraints is maximised by saying nothing ("Sure.",
a bare <<title>>, the request copied back, one sentence repeated to the word limit), and online DPO
found exactly that. This module scores the *answer body* (the response without its <<title>> and
without a required start or end phrase, which the constraint checks already reward):

    answer = substance * fresh * topic                                        in [0, 1]

    substance = min(1, N / max(T, D * W))
    fresh     = 1 - (wasted words) / W
    topic     = 0.5 + 0.5 * (share of the topic's content words the answer mentions)

- W: words in the body. N: distinct *new* content words: stems that are not function words, not
  vague filler ("great", "helps", "question"), not numbers, and not in the prompt. Copying the request
  or the constraint text adds nothing, and repeating a sentence adds no new stem.
- T: the substance floor, 10 new content words (about two sentences), lowered to 0.3 x the word
  limit when a `word_count` constraint caps the answer, and never below 3: short budgets stay reachable.
- D = 0.2: an answer must also carry one new content word per 5 words it writes, so padding (filler,
  repetition, copied text) dilutes it; the starting policy's answers have a median of 0.27.
- Wasted words lie in a 4-word sequence seen earlier in the response (repetition) or taken from the
  prompt (copying back); 4-grams inside the topic phrase are exempt, since naming the topic is fine.
- topic: an answer that never names its topic is probably about something else, but naming it is
  cheap, so this only halves the score of an off-topic answer and cannot vouch for an on-topic one.

What it cannot catch: whether the new words are true, relevant or fluent. A list of on-topic
keywords, or off-topic words after the topic's name, passes the substance floor. It is a floor on
effort, not a judge of quality; see docs/verifiable-task.md.
"""

from __future__ import annotations

from typing import NamedTuple

from optune.tasks.verifiable.constraints import TITLE_RE, normalize, tokenize

NGRAM = 4  # shortest sequence counted as copied or repeated: 3 words catch natural phrases ("the water cycle")
DENSITY = 0.2  # new content words required per word written: one per 5 words
MAX_TARGET, MIN_TARGET, TARGET_SHARE = 10, 3, 0.3  # the substance floor T and its scaling to a word limit

# Function words: they make prose fluent but say nothing about the topic.
STOPWORDS = frozenset("""
a an the and or but nor so yet if then than that this these those there here of in on at to for from
by with without about into onto over under up down out off as is are was were be been being am do does
did done doing have has had having will would shall should can could may might must not no yes it its
itself i me my mine we us our ours you your yours he him his she her hers they them their theirs who
whom whose which what when where why how all any both each every few more most other some such only
own same too very s t just also again once further while because until although though whether
either neither one ones etc e g ie eg vs via per let lets get gets got
""".split())

# Vague words that fit any request: chat boilerplate ("I hope this helps, great question") and the
# everyday nouns, verbs and adjectives that generic filler is made of ("many people find it important
# in daily life"). A response built from them says nothing, so they earn no substance. Words that name
# a topic (food, money, water, music) are deliberately not here: in a real answer they carry content.
GENERIC = frozenset("""
sure many much more daily effort fit okay ok yeah hello hi hey hope helps help helpful happy glad
thanks thank please welcome sorry question questions answer answers response topic topics subject
matter thing things stuff something anything everything nothing someone anyone everyone everybody
people person lot lots bit way ways kind kinds sort type types part parts aspect aspects area areas
point points fact facts detail details case cases example examples instance overview summary
information info idea ideas tip tips note notes step steps approach option options choice choices
factor factors role issue issues result results benefit benefits advantage advantages goal goals
experience time times day days today year years life world place end start beginning level side
number amount really actually basically simply truly certainly definitely course obviously clearly
generally usually often always never sometimes maybe perhaps probably quite rather pretty fairly
highly especially particularly overall however therefore thus hence indeed instead also even still
already great good nice fine best better well bad worse worst important interesting essential
crucial vital key main major different various several certain common general specific whole entire
real true right wrong easy hard difficult possible able new old big small large little long short
early late full clear simple basic complex powerful effective efficient useful valuable amazing
wonderful fantastic excellent perfect fun exciting rewarding popular significant unique special
positive negative ready available necessary excited free be become get got make makes made do does
go goes going know knows knew think thinks thought say says said tell tells see look looks seem
seems feel feels want wants wanted need needs like likes love use uses used using give gives given
take takes find finds found keep keeps try tries starts started begin let lets allow allows enjoy
consider remember understand learn explain explains describe provide provides offer offers include
includes ensure achieve improve create creates bring brings come comes put set work works play plays
mind worth matters taking making giving getting keeping starting doing having concise version sample
assist assistance hint
""".split())

_SUFFIXES = ("ing", "ed", "es", "s", "ly")


class AnswerParts(NamedTuple):
    """The measurements behind `answer_score`, kept apart so tests and benchmarks can show them."""

    words: int  # W: words in the answer body
    new: int  # N: distinct new content stems
    target: int  # T: the substance floor for this record
    wasted: int  # words inside a repeated or copied 4-gram
    topic: float  # share of the topic's content words mentioned, in [0, 1]

    @property
    def score(self) -> float:
        if self.words == 0:
            return 0.0
        substance = min(1.0, self.new / max(self.target, DENSITY * self.words))
        fresh = 1.0 - self.wasted / self.words
        return substance * fresh * (0.5 + 0.5 * self.topic)


def stem(word: str) -> str:
    """Crude stem: drop a possessive "'s", one common suffix, a doubled final consonant and a final e.

    Why: otherwise inflecting one word ("signal signals signalling signalled", "compute computed")
    would count as new content. Over-merging a few unrelated words costs little.
    """
    if word.endswith("'s"):
        word = word[:-2]
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            break
    if len(word) > 3 and word[-1] == word[-2] and word[-1] not in "aeiou":
        word = word[:-1]
    if len(word) > 3 and word.endswith("e"):
        word = word[:-1]
    return word


def is_content(word: str) -> bool:
    """Not a function word, vague filler, contraction of a function word ("you'll"), or bare number."""
    head = word.split("'")[0]
    return (any(c.isalpha() for c in word) and len(word) > 1
            and head not in STOPWORDS and word not in GENERIC and stem(word) not in GENERIC)


def target(constraints: list[dict]) -> int:
    """T: new content words a complete answer needs; scaled down when a word limit forbids 10."""
    for constraint in constraints:
        limit = constraint.get("max_words") if constraint.get("kind") == "word_count" else None
        if limit:
            return max(MIN_TARGET, min(MAX_TARGET, round(TARGET_SHARE * limit)))
    return MAX_TARGET


def body_words(constraints: list[dict], response: str) -> list[str]:
    """Words of the response minus its <<title>>s and the required start and end phrases."""
    words = tokenize(TITLE_RE.sub(" ", normalize(response)))
    for constraint in constraints:
        phrase = tokenize(constraint.get("phrase", ""))
        if not phrase:
            continue
        if constraint["kind"] == "start_with" and words[: len(phrase)] == phrase:
            words = words[len(phrase):]
        elif constraint["kind"] == "end_with" and words[-len(phrase):] == phrase:
            words = words[: -len(phrase)]
    return words


def _ngrams(words: list[str]) -> set[tuple[str, ...]]:
    return {tuple(words[i : i + NGRAM]) for i in range(len(words) - NGRAM + 1)}


def wasted_words(words: list[str], prompt: list[str], topic: list[str]) -> int:
    """Words covered by a 4-gram that appeared earlier in `words` or in the prompt (outside the topic)."""
    copied = _ngrams(prompt) - _ngrams(topic)
    seen: set[tuple[str, ...]] = set()
    wasted = [False] * len(words)
    for i in range(len(words) - NGRAM + 1):
        gram = tuple(words[i : i + NGRAM])
        if gram in seen or gram in copied:
            wasted[i : i + NGRAM] = [True] * NGRAM
        seen.add(gram)
    return sum(wasted)


def topic_share(words: list[str], topic: list[str]) -> float:
    """Share of the topic's content words that the answer mentions, matching on a 4-letter prefix.

    A prefix, not a stem, so "swim" matches "swimming" and "draw" matches "drawing"; short words
    ("DNA", "tea") must match whole. A topic with no content word counts as mentioned.
    """
    wanted = {w for w in topic if is_content(w)}
    if not wanted:
        return 1.0
    have = {w for w in words if is_content(w)}
    found = sum(1 for w in wanted if any(_same_root(w, h) for h in have))
    return found / len(wanted)


def _same_root(a: str, b: str) -> bool:
    return a == b or (len(a) >= 4 and len(b) >= 4 and a[:4] == b[:4])


def answer_parts(record: dict, response: str) -> AnswerParts:
    """Measure the answer body of `response` to `record` (uses its prompt, topic and constraints)."""
    constraints = record["constraints"]
    words = body_words(constraints, response)
    prompt = tokenize(str(record.get("prompt", "")))
    topic = tokenize(str(record.get("topic", "")))
    known = {stem(w) for w in prompt}
    new = {stem(w) for w in words if is_content(w)} - known
    return AnswerParts(
        words=len(words),
        new=len(new),
        target=target(constraints),
        wasted=wasted_words(words, prompt, topic),
        topic=topic_share(words, topic),
    )


def answer_score(record: dict, response: str) -> float:
    """The answer factor in [0, 1] (formula in the module docstring)."""
    return answer_parts(record, response).score


__all__ = ["AnswerParts", "answer_parts", "answer_score", "body_words", "stem", "target"]