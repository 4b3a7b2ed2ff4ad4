"""Plausible Taiwanese personal names for simulated people (role holders, payees)."""

from __future__ import annotations

import random

SURNAMES = "陳林黃張李王吳劉蔡楊許鄭謝洪郭邱曾廖賴徐周葉蘇莊呂江何蕭羅高潘簡朱鍾彭游詹胡施沈余盧梁趙顏柯翁魏孫戴"
GIVEN = "志明淑芬美玲家豪怡君俊傑雅婷宗翰承恩冠宇欣怡建宏佩珊明輝惠如信宏詩涵柏翰品妤子瑜宥廷"
ID_LETTERS = "ABCDEFGHJKLMNPQRSTUVXYWZIO"


def person_name(rng: random.Random) -> str:
    return rng.choice(SURNAMES) + rng.choice(GIVEN) + rng.choice(GIVEN)
