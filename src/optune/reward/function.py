"""`reward.backend=callable`: a user's Python function scores the responses.

The function is called as f(prompts, responses), or f(prompts, responses, histories) when it asks for the
conversation before each request (a required third parameter, or a parameter named `histories`; decided once
from its signature). Whatever goes wrong inside it is one line naming it: an exception, a `sys.exit`, a return
value that is not one number per response (optune.reward.scores), or a call that outlasts reward.timeout_s.

The call runs in a daemon worker thread so that the run can give up on it after reward.timeout_s; Python cannot
kill a thread, so a function that hangs keeps its thread (and whatever it holds) until the process ends.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import threading
from pathlib import Path

from optune.config.schema import callable_label, is_callable_label, label_name
from optune.errors import UserError
from optune.prompt import Prompt
from optune.reward.config import RewardSettings
from optune.reward.scores import check_scores, describe


def load_function(spec: str):
    """"package.module:function" or "path/to/file.py:function" -> the function object."""
    if ":" not in spec:
        raise UserError(f"reward.function {spec!r} must look like module:function or file.py:function")
    target, name = spec.rsplit(":", 1)
    if target.endswith(".py") and not Path(target).is_file():
        raise UserError(f"reward.function: file {target} " + ("is a folder" if Path(target).is_dir() else
                                                               "does not exist"))
    try:
        if target.endswith(".py"):
            spec_obj = importlib.util.spec_from_file_location(Path(target).stem, target)
            if spec_obj is None or spec_obj.loader is None:
                raise UserError(f"reward.function: {target} cannot be loaded as a Python module")
            module = importlib.util.module_from_spec(spec_obj)
            spec_obj.loader.exec_module(module)
        else:
            module = importlib.import_module(target)
    except ImportError as err:
        raise UserError(f"reward.function: cannot import {target}: {err}") from None
    except SystemExit as err:  # left alone, it would end optune with the module's exit code and no word
        raise UserError(f"reward.function: importing {target} called sys.exit({err.code!r}); a reward module must "
                        "define its function without exiting") from err
    except Exception as err:  # the user's module failed while running its top level
        raise UserError(f"reward.function: importing {target} raised {describe(err)}") from err
    fn = getattr(module, name, None)
    if not callable(fn):
        raise UserError(f"reward.function: {target} has no function {name!r}")
    return fn


def takes_histories(fn) -> str | None:
    """How `fn` wants the histories: "keyword" (a parameter named histories), "positional" (a required third
    positional parameter), or None (f(prompts, responses) only). An optional third parameter is left alone:
    functions written before histories existed may use one for something else."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):  # some builtins and C callables have no signature: call them as before
        return None
    if any(p.name == "histories" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params):
        return "keyword"
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) >= 3 and positional[2].default is inspect.Parameter.empty:
        return "positional"
    return None


class CallableReward:
    """A user's Python function f(prompts: list[str], responses: list[str][, histories]) -> list[float].

    reward.function names it ("module:function"), or is the function itself when given through optune.run.
    """

    def __init__(self, cfg: RewardSettings):
        if callable(cfg.function):
            self.name, self.fn = label_name(callable_label(cfg.function)), cfg.function
        elif cfg.function is None:
            raise UserError("reward.function is needed for the callable backend (module:function or file.py:function)")
        elif is_callable_label(cfg.function):
            raise UserError(f"reward.function: this run's reward was the Python function {label_name(cfg.function)}, "
                            "which config.yaml cannot hold; resume it from Python and pass the function again: "
                            "optune.run(resume=RUN_DIR, reward={'function': f}) (optune.dpo for a dpo run)")
        else:
            self.name, self.fn = cfg.function, load_function(cfg.function)
        self.timeout_s = cfg.timeout_s
        self.histories = takes_histories(self.fn)
        self.who = f"reward function {self.name}"
        """How errors about its scores name it (a mix names the component instead)."""

    def score(self, prompts: list[Prompt], responses: list[str]) -> list[float]:
        args: list = [[p.text for p in prompts], list(responses)]
        kwargs: dict = {}
        if self.histories:  # copies: the function may change what it is given
            histories = [[dict(m) for m in p.history] for p in prompts]
            if self.histories == "positional":
                args.append(histories)
            else:
                kwargs["histories"] = histories
        scores = self._call(args, kwargs)
        return check_scores(scores, len(responses), who=self.who)

    def _call(self, args: list, kwargs: dict):
        """The function's return value, from a worker thread bounded by reward.timeout_s."""
        outcome: dict = {}

        def work():
            try:
                outcome["value"] = self.fn(*args, **kwargs)
            except BaseException as err:  # in a thread, a SystemExit would vanish silently: the caller reports it
                outcome["error"] = err

        worker = threading.Thread(target=work, name=f"reward function {self.name}", daemon=True)
        worker.start()
        worker.join(self.timeout_s)
        if worker.is_alive():
            raise UserError(f"reward function {self.name} did not return within reward.timeout_s={self.timeout_s:g} s "
                            f"for {len(args[1])} responses; make it faster or raise reward.timeout_s (its thread "
                            "cannot be stopped and runs on until the process ends)")
        err = outcome.get("error")
        if isinstance(err, KeyboardInterrupt):
            raise err
        if isinstance(err, SystemExit):
            raise UserError(f"reward function {self.name} called sys.exit({err.code!r}); a reward function must "
                            "return one score per response") from err
        if err is not None:  # a bug in the user's function: one line (the traceback with optune --debug)
            raise UserError(f"reward function {self.name} raised {describe(err)}") from err
        return outcome["value"]
