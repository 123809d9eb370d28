/** Two strong, fixed encryption keys for tests (never used anywhere else). */
export const oldKey = "3632f3da0a8c1487085be1515c2486dd8a52bc340fd743fb0062d2e6794aaf95";
export const newKey = "412c74b6171a77b8adb4d17078b32bed130e6dd80c6dca99bf4daa39ea1d8c72";
