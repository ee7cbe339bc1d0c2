"""Tasks: what a recipe learns — degradation, objectives, p sampling, knob space, evaluation cases.

The protocol is :class:`~.base.Task` (see :mod:`tunableconv.tasks.base`); each task is one
class in its own module, listed explicitly in :data:`TASKS`:

==================  ===============================================  =============================
name                class                                            knobs
==================  ===============================================  =============================
``denoise``         :class:`~.denoise.DenoiseTask`                   fidelity / noise_preservation
                                                                     (simplex; slider ``strength``)
``deblur_denoise``  :class:`~.deblur_denoise.DeblurDenoiseTask`      denoise / deblur (cube)
``sr``              :class:`~.sr.SRTask`                             fidelity / perceptual
                                                                     (simplex; slider ``perception``)
``restore3``        :class:`~.restore3.Restore3Task`                 deblur / denoise / dejpeg (cube;
                                                                     27 effects: {0, ½, 1}³)
``style``           :class:`~.style.StyleTask`                       one per style: mosaic /
                                                                     edtaonisl / kandinsky (simplex)
==================  ===============================================  =============================

Its recipe fields are the task's :class:`~.base.TaskSection` subclass
(``TASKS[name].section_class``): the recipe's ``task`` section is a tagged union keyed by
``task.name``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import InputError
from .base import CONTROLS, EvalCase, PSampling, RunnerFacts, Sample, Task, TaskSection, conditioned_on, runner_facts, target_key
from .deblur_denoise import DEBLUR_DENOISE_KNOBS, DeblurDenoiseTask, DeblurDenoiseTaskSection
from .denoise import NOISE_KNOBS, STRENGTH, DenoiseTask, DenoiseTaskSection
from .restore3 import RESTORE3_KNOBS, Restore3Task, Restore3TaskSection
from .sr import PERCEPTION, SR_KNOBS, SRTask, SRTaskSection
from .style import StyleTask, StyleTaskSection

if TYPE_CHECKING:
    from ..train.config import Recipe

#: task name -> task class
TASKS: dict[str, type[Task]] = {"denoise": DenoiseTask, "deblur_denoise": DeblurDenoiseTask, "sr": SRTask,
                              "restore3": Restore3Task, "style": StyleTask}


#: the task of a recipe whose ``task`` section names none (every saved recipe names its task)
DEFAULT_TASK = "denoise"


def default_task_section() -> TaskSection:
    """A fresh ``task`` section of :data:`DEFAULT_TASK` (a :class:`Recipe`'s default)."""
    return TASKS[DEFAULT_TASK].section_class()


def get_task(name: str) -> type[Task]:
    """The task class called ``name`` (a one-line error listing the known ones otherwise)."""
    if name not in TASKS:
        raise InputError(f"unknown task {name!r}; known: {', '.join(TASKS)}")
    return TASKS[name]


def case_examples() -> str:
    """One evaluation case of each task that has levels, as a user writes it, for help texts:
    ``"denoise: '25'; deblur_denoise: 'noise=15,blur=2'; ..."``."""
    return "; ".join(f"{name}: '{cls.case_example}'" for name, cls in TASKS.items() if cls.case_example)


def build_task(recipe: "Recipe") -> Task:
    """The task object of ``recipe`` (``recipe.task.name``), its section validated."""
    return get_task(recipe.task.name)(recipe)


__all__ = [
    "TASKS", "DEFAULT_TASK", "default_task_section", "get_task", "build_task", "case_examples", "Task", "TaskSection", "Sample", "EvalCase", "PSampling", "RunnerFacts",
    "CONTROLS", "conditioned_on", "runner_facts", "target_key",
    "DenoiseTask", "DenoiseTaskSection", "NOISE_KNOBS", "STRENGTH",
    "DeblurDenoiseTask", "DeblurDenoiseTaskSection", "DEBLUR_DENOISE_KNOBS",
    "SRTask", "SRTaskSection", "SR_KNOBS", "PERCEPTION",
    "Restore3Task", "Restore3TaskSection", "RESTORE3_KNOBS",
    "StyleTask", "StyleTaskSection",
]
