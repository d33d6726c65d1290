"""ACE for guidedrl: an LLM actor and an LLM critic co-evolving with discrete SAC (Wan et al., ICML 2025,
arXiv 2506.02522). See ``plugins/ace/README.md``."""

from guidedrl_ace.config import AceConfig
from guidedrl_ace.plugin import Ace

__all__ = ["Ace", "AceConfig"]
