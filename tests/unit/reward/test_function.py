"""The callable backend: what a user's function is given (histories when it asks), and every way it can fail
as one line naming it: a wrong return value, an exception, sys.exit, a hang past reward.timeout_s."""

import sys
import threading
import time

import pytest

from optune.errors import UserError
from optune.prompt import Prompt
from optune.reward.backends import checked_score, make_reward
from optune.reward.config import RewardConfig
from optune.reward.function import takes_histories

HISTORY = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
           {"role": "assistant", "content": "Hello."}]
PROMPTS = [Prompt("a", "first?", history=HISTORY), Prompt("b", "second?")]
RESPONSES = ["x", "yy"]


def backend(fn, **kw):
    return make_reward(RewardConfig(backend="callable", function=fn, **kw))


def two(prompts, responses):
    return [len(r) for r in responses]


def test_two_parameters_get_prompts_and_responses():
    assert checked_score(backend(two), PROMPTS, RESPONSES) == [1.0, 2.0]


def test_a_third_parameter_or_histories_keyword_gets_the_histories():
    seen = []

    def positional(prompts, responses, histories):
        seen.append(histories)
        return [0.0, 1.0]

    def keyword(prompts, responses, *, histories, scale=1.0):
        seen.append(histories)
        return [0.0, 1.0]

    class Scorer:
        def __call__(self, prompts, responses, convs):
            seen.append([list(c) for c in convs])
            convs[0].append("changed")  # what the function does to its copy stays there
            return [0.0, 1.0]

    for fn in (positional, keyword, Scorer()):
        assert checked_score(backend(fn), PROMPTS, RESPONSES) == [0.0, 1.0]
    assert seen == [[HISTORY, []]] * 3 and PROMPTS[0].history == HISTORY


@pytest.mark.parametrize("fn,expected", [
    (two, None), (lambda p, r, h: 0, "positional"), (lambda p, r, histories=None: 0, "keyword"),
    (lambda p, r, scale=1.0: 0, None),  # an optional third parameter predates histories: left alone
    (lambda *args: 0, None), (lambda p, r, **kw: 0, None), (len, None),
])
def test_takes_histories(fn, expected):
    assert takes_histories(fn) == expected


def returns(value):
    def f(prompts, responses):
        return value
    return f


@pytest.mark.parametrize("value,match", [
    ({"x": 1.0, "yy": 2.0}, r"a dict \(a mapping\)"), ("12", "a string"), ([True, False], ".*score 0 is True"),
    ((s for s in [1.0]), "1 scores for 2 responses"), (None, "NoneType"),
])
def test_a_wrong_return_value_names_the_function(value, match):
    name = r"[\w.]*test_function\.returns\.<locals>\.f"
    with pytest.raises(UserError, match=rf"^reward function {name} returned {match}"):
        backend(returns(value)).score(PROMPTS, RESPONSES)


def test_an_exception_is_one_line_naming_the_function():
    def broken(prompts, responses):
        raise ValueError("bad\ninput")

    with pytest.raises(UserError, match=r"reward function .*broken raised ValueError: bad input$"):
        backend(broken).score(PROMPTS, RESPONSES)


def test_sys_exit_does_not_end_the_run_silently():
    def leaves(prompts, responses):
        sys.exit(3)

    with pytest.raises(UserError, match=r"reward function .*leaves called sys.exit\(3\); a reward function must "):
        backend(leaves).score(PROMPTS, RESPONSES)


def test_keyboard_interrupt_is_an_interrupt():
    def interrupted(prompts, responses):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        backend(interrupted).score(PROMPTS, RESPONSES)


def test_a_hung_function_stops_at_the_timeout():
    release = threading.Event()

    def hangs(prompts, responses):
        release.wait(30)
        return [0.0, 0.0]

    start = time.monotonic()
    try:
        with pytest.raises(UserError, match=r"reward function .*hangs did not return within reward.timeout_s=0.2 s "
                                            r"for 2 responses; .*cannot be stopped"):
            backend(hangs, timeout_s=0.2).score(PROMPTS, RESPONSES)
        assert time.monotonic() - start < 5
    finally:
        release.set()  # the thread the run gave up on ends with the test


def test_timeout_must_be_positive():
    from optune.config.run import load_config

    with pytest.raises(UserError, match=r"reward.timeout_s must be > 0; got 0"):
        load_config(None, ["reward.backend=callable", "reward.function=optune.tasks.toy:letter_fraction",
                           "reward.timeout_s=0"])


@pytest.mark.parametrize("code, shown", [("4", "4"), ("", "None"), ("'bye'", "'bye'")])
def test_a_module_that_exits_as_it_is_imported_is_named(tmp_path, code, shown):
    """sys.exit at a reward module's top level would end optune with that code and no word: one line instead."""
    from optune.reward.function import load_function

    module = tmp_path / "leaving.py"
    module.write_text(f"import sys\nsys.exit({code})\n\n"
                      "def f(prompts, responses):\n    return [0.0] * len(responses)\n")
    with pytest.raises(UserError) as err:
        load_function(f"{module}:f")
    assert str(err.value) == (f"reward.function: importing {module} called sys.exit({shown}); a reward module must "
                              "define its function without exiting")
