"""Clothing segmentation of the Anny mesh (from its skinning weights) and random looks for people and scenes.

Each face gets a body part from the bone that dominates its first vertex's skinning weights (topology only, so
it holds for every body shape and pose). Per person, the parts map onto 5 material slots (skin, top, bottom,
shoes, hair): long/short sleeves, trousers/shorts and a hair cap whose extent varies. Hair is the head region
above a random height on the template head (and behind the face for longer hair).
"""

from __future__ import annotations

import colorsys

import numpy as np

SLOTS = ("skin", "top", "bottom", "shoes", "hair")
SKIN, TOP, BOTTOM, SHOES, HAIR = range(5)
# Body parts (face labels)
PARTS = ("head", "neck", "torso", "upperarm", "lowerarm", "hand", "hips", "upperleg", "lowerleg", "foot")
P = {name: i for i, name in enumerate(PARTS)}

# Skin tones (linear-ish RGB), light to dark, roughly the Fitzpatrick / Monk scale range.
SKIN_TONES = np.array(
    [
        [0.85, 0.64, 0.52],
        [0.80, 0.57, 0.44],
        [0.72, 0.50, 0.38],
        [0.62, 0.42, 0.30],
        [0.50, 0.33, 0.22],
        [0.38, 0.24, 0.16],
        [0.26, 0.16, 0.11],
        [0.18, 0.11, 0.08],
    ]
)
HAIR_COLOURS = np.array(
    [
        [0.02, 0.015, 0.01],
        [0.08, 0.05, 0.03],
        [0.22, 0.13, 0.06],
        [0.45, 0.32, 0.16],
        [0.60, 0.48, 0.28],
        [0.45, 0.18, 0.08],
        [0.55, 0.55, 0.55],
        [0.85, 0.85, 0.82],
    ]
)


def _part_of_bone(name: str) -> int:
    base = name.split(".")[0]
    if base in ("head", "eye") or base.startswith("jaw") or base.startswith("tongue"):
        return P["head"]
    if base.startswith("neck"):
        return P["neck"]
    if base.startswith("spine") or base in ("clavicle", "shoulder01", "root"):
        return P["torso"]
    if base.startswith("upperarm"):
        return P["upperarm"]
    if base.startswith("lowerarm"):
        return P["lowerarm"]
    if base in ("wrist",) or base.startswith("finger") or base.startswith("metacarpal"):
        return P["hand"]
    if base == "pelvis":
        return P["hips"]
    if base.startswith("upperleg"):
        return P["upperleg"]
    if base.startswith("lowerleg"):
        return P["lowerleg"]
    if base == "foot" or base.startswith("toe"):
        return P["foot"]
    return P["torso"]


def segment_faces(model) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Triangle faces (F, 3) int32, face part (F,) int8 and face hair score (F,) float32 from an
    ``anny.Anny``.

    The hair score is the template height above the eyes along the head, plus a bonus behind the face, so
    that ``score > threshold`` grows from a cap (high threshold) to long hair (low threshold).
    """
    faces = model.get_triangular_faces().cpu().numpy().astype(np.int32)
    idx = model.vertex_bone_indices.cpu().numpy()
    w = model.vertex_bone_weights.cpu().numpy()
    top = idx[np.arange(len(idx)), w.argmax(1)]
    bone_part = np.array([_part_of_bone(b) for b in model.bone_labels], np.int8)
    vpart = bone_part[top]
    tv = model.template_vertices.cpu().numpy()
    head = vpart == P["head"]
    hz = tv[head, 2]
    z0, z1 = np.percentile(hz, 35), hz.max()  # ~eye level .. crown
    y_face = np.percentile(tv[head, 1], 20)  # toward the face (Anny faces -Y)
    depth = (tv[:, 1] - y_face) / max(np.ptp(tv[head, 1]), 1e-6)  # 0 at the face, ~1 at the back of the head
    score = (tv[:, 2] - z0) / max(z1 - z0, 1e-6) + 0.6 * np.clip(depth, 0, 1)
    score[~head] = -10.0
    return faces, vpart[faces[:, 0]].astype(np.int8), score[faces].mean(1).astype(np.float32)


def _rand_cloth(rng: np.random.Generator) -> list[float]:
    h = rng.random()
    s = rng.choice([rng.uniform(0.0, 0.15), rng.uniform(0.3, 0.9)])
    v = rng.uniform(0.05, 0.85)
    return [*colorsys.hsv_to_rgb(h, s, v)]


def person_look(rng: np.random.Generator) -> dict:
    """Random look of one person: colours and roughness per slot, sleeve/leg lengths, hair extent."""
    skin = SKIN_TONES[rng.integers(len(SKIN_TONES))] * rng.uniform(0.92, 1.08)
    return {
        "colors": [
            np.clip(skin, 0, 1).tolist(),
            _rand_cloth(rng),
            _rand_cloth(rng),
            _rand_cloth(rng),
            HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))].tolist(),
        ],
        "roughness": [0.55, float(rng.uniform(0.5, 1.0)), float(rng.uniform(0.5, 1.0)), 0.4, 0.45],
        "sleeves": str(rng.choice(["long", "short", "none"], p=[0.45, 0.45, 0.10])),
        "legs": str(rng.choice(["long", "short"], p=[0.75, 0.25])),
        "hair": float(rng.uniform(0.15, 1.1)) if rng.random() > 0.08 else 99.0,  # 99 = bald
    }


def material_indices(face_part: np.ndarray, hair_score: np.ndarray, look: dict) -> np.ndarray:
    """Material slot (F,) of each face for a person's look."""
    slot = np.full(face_part.shape, SKIN, np.int32)
    slot[face_part == P["torso"]] = TOP
    if look["sleeves"] in ("long", "short"):
        slot[face_part == P["upperarm"]] = TOP
    if look["sleeves"] == "long":
        slot[face_part == P["lowerarm"]] = TOP
    slot[np.isin(face_part, [P["hips"], P["upperleg"]])] = BOTTOM
    if look["legs"] == "long":
        slot[face_part == P["lowerleg"]] = BOTTOM
    slot[face_part == P["foot"]] = SHOES
    slot[hair_score > look["hair"]] = HAIR
    return slot


def scene_look(rng: np.random.Generator) -> dict:
    """Random background, floor and lighting."""
    el, az = rng.uniform(15, 80), rng.uniform(0, 360)
    return {
        "world_color": [
            *colorsys.hsv_to_rgb(rng.uniform(0.5, 0.7), rng.uniform(0.0, 0.5), rng.uniform(0.3, 1.0))
        ],
        "world_strength": float(rng.uniform(0.3, 1.2)),
        "floor_colors": [_rand_cloth(rng), _rand_cloth(rng)],
        "floor_scale": float(rng.uniform(0.5, 8.0)),
        "sun_strength": float(rng.uniform(0.5, 5.0)),
        "sun_rotation": [float(np.radians(90 - el)), 0.0, float(np.radians(az))],
        "boxes": [
            {
                "offset": [float(rng.uniform(-6, 6)), float(rng.uniform(2, 12))],
                "size": [
                    float(rng.uniform(0.3, 3)),
                    float(rng.uniform(0.3, 3)),
                    float(rng.uniform(0.3, 3.5)),
                ],
                "color": _rand_cloth(rng),
                "yaw": float(rng.uniform(0, np.pi)),
            }
            for _ in range(int(rng.integers(0, 5)))
        ],
    }
