"""(interim) near-duplicate key."""
import re

import pandas as pd

_RT = re.compile(r"^\s*rt\s+@\w+:?\s*")
_URL = re.compile(r"https?://\S+|www\.\S+")
_MENTION = re.compile(r"@\w+")
_PUNCT = re.compile(r"[^\w\s]")
_WS = re.compile(r"\s+")


def near_duplicate_key(text: str) -> str:
    t = text.lower()
    t = _RT.sub("", t)
    t = _URL.sub(" ", t)
    t = _MENTION.sub(" ", t)
    t = _PUNCT.sub(" ", t)
    return _WS.sub(" ", t).strip()


def near_duplicate_keys(texts: pd.Series) -> pd.Series:
    return texts.map(near_duplicate_key)
