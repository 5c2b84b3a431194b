"""The people of the simulated world: accounts, their homes, devices, workplaces and habits."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

import numpy as np
import polars as pl

from detector.simulate import plan

DOMAIN = "medimail.example"


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


FIRST_NAMES = _words(
    "Jean Marie Pierre Anne Michel Catherine Philippe Isabelle Nicolas Nathalie Alain Sophie Christophe "
    "Sylvie Francois Valerie Laurent Christine Eric Sandrine Olivier Celine Julien Stephanie Thomas Aurelie "
    "Sebastien Julie David Emilie Frederic Camille Patrick Claire Guillaume Elodie Antoine Caroline Vincent "
    "Laura Hugo Lea Lucas Manon Louis Chloe Mathieu Sarah Benoit Pauline Yann Morgane Karim Amina Mehdi "
    "Fatima Youssef Ines Paul Agathe Rachid Samia Hélène Gaëlle Jérôme Frédérique Loïc Maëlle"
)
LAST_NAMES = _words(
    "Martin Bernard Thomas Petit Robert Richard Durand Dubois Moreau Laurent Simon Michel Lefebvre Leroy "
    "Roux David Bertrand Morel Fournier Girard Bonnet Dupont Lambert Fontaine Rousseau Vincent Muller "
    "Lefevre Faure Andre Mercier Blanc Guerin Boyer Garnier Chevalier Francois Legrand Gauthier Garcia "
    "Perrin Robin Clement Morin Nicolas Henry Roussel Mathieu Gautier Masson Marchand Duval Denis Dumont "
    "Marie Lemaire Noel Meyer Dufour Meunier Brun Blanchard Giraud Joly Riviere Lucas Brunet Gaillard "
    "Barbier Arnaud Martinez Gerard Roche Renard Schmitt Roy Leroux Colin Vidal Caron Picard Roger Fabre "
    "Aubert Lemoine Renaud Dumas Lacroix Olivier Philippe Bourgeois Pierre Benoit Rey Leclerc Payet Rolland "
    "Leclercq Guillaume Lecomte Lopez Jean Dupuy Guillot Hubert Berger Carpentier Sanchez Dupuis Moulin "
    "Louis Deschamps Huet Vasseur Perez Boucher Fleury Royer Klein Jacquet Adam Paris Poirier Marty Aubry "
    "Guyot Carre Charles Renault Charpentier Menard Maillard Baron Bertin Bailly Herve Schneider Fernandez "
    "Le_Gall Collet Leger Bouvier Julien Prevost Millet Perrot Daniel Le_Roux Cousin Germain Breton Besson "
    "Langlois Remy Le_Goff Pelletier Leveque Perrier Leblanc Barre Lebrun Marchal Weber Mallet Hamon"
)
GENERIC_LOCALS = (
    "contact",
    "secretariat",
    "accueil",
    "admin",
    "info",
    "compta",
    "direction",
    "rh",
    "cabinet",
    "pharmacie",
    "test",
    "support",
)

PROFESSIONS: tuple[tuple[str, float], ...] = (
    ("médecin", 0.34),
    ("infirmier", 0.24),
    ("masseur-kinésithérapeute", 0.12),
    ("pharmacien", 0.10),
    ("chirurgien-dentiste", 0.08),
    ("sage-femme", 0.04),
    ("orthophoniste", 0.03),
    ("pédicure-podologue", 0.02),
    ("opticien-lunetier", 0.015),
    ("audioprothésiste", 0.01),
    ("ergothérapeute", 0.005),
)
CLINIC_NAMES = (
    "Saint-Joseph",
    "Sainte-Anne",
    "Les Cèdres",
    "Pasteur",
    "Les Tilleuls",
    "Saint-Martin",
    "Bon Secours",
    "Les Lilas",
    "Saint-Vincent",
    "Val d'Ouest",
    "Jeanne d'Arc",
    "Les Peupliers",
    "Sainte-Marie",
    "La Roseraie",
    "Saint-Louis",
    "Les Jardins",
    "Mutualiste",
    "Du Parc",
)


def ascii_lower(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower().replace("_", "")


@dataclass(frozen=True)
class Population:
    """Per-account attributes, as parallel numpy arrays indexed by account number."""

    account: np.ndarray  # str objects
    city: np.ndarray
    isp: np.ndarray
    home_v4: np.ndarray
    has_v6: np.ndarray
    v6_prefix: np.ndarray  # str objects ("" when no IPv6)
    carrier: np.ndarray  # -1: no phone
    has_desktop: np.ndarray
    uses_pop3: np.ndarray
    uses_webmail: np.ndarray
    workplace_kind: np.ndarray  # 0 none, 1 hospital, 2 clinic
    workplace: np.ndarray  # index into hospitals or clinics
    is_practitioner: np.ndarray
    profession: np.ndarray  # str objects ("" when not a practitioner)
    vpn_user: np.ndarray
    activity: np.ndarray  # probability of being active on a given day
    hospitals: list[tuple[str, int]]
    clinics: list[tuple[str, int]]
    hospital_nat: list[np.ndarray]  # per hospital: NAT addresses (ints)
    clinic_nat: list[np.ndarray]

    @property
    def size(self) -> int:
        return len(self.account)


def _names(rng: np.random.Generator, n: int) -> np.ndarray:
    first = np.array([ascii_lower(x) for x in FIRST_NAMES], dtype=object)
    last = np.array([ascii_lower(x) for x in LAST_NAMES], dtype=object)
    f = first[rng.integers(0, len(first), n)]
    la = last[rng.integers(0, len(last), n)]
    sep = np.where(rng.random(n) < 0.85, ".", "-")
    frame = pl.DataFrame({"f": f.astype(str), "s": sep.astype(str), "l": la.astype(str)})
    local = frame.select(pl.concat_str("f", "s", "l").alias("local"))["local"]
    frame = pl.DataFrame({"local": local}).with_columns(n=pl.int_range(pl.len()).over("local"))
    names = frame.select(
        pl.when(pl.col("n") == 0)
        .then(pl.col("local"))
        .otherwise(pl.concat_str(pl.col("local"), (pl.col("n") + 1).cast(pl.String)))
        + "@"
        + DOMAIN
    ).to_series()
    return names.to_numpy().astype(object)


def build(rng: np.random.Generator, n: int, practitioner_share: float) -> Population:
    account = _names(rng, n)
    weights = np.array([c.weight for c in plan.DOMESTIC_CITIES])
    city = rng.choice(len(weights), n, p=weights / weights.sum())
    isp = rng.choice(len(plan.ISPS), n, p=np.array(plan.ISP_SHARE))
    home_v4 = np.empty(n, dtype=np.int64)
    for i in range(len(plan.ISPS)):
        for c in range(len(plan.DOMESTIC_CITIES)):
            who = np.flatnonzero((isp == i) & (city == c))
            if len(who):
                offsets = rng.choice(plan.HOUSEHOLD_SPAN - 2, len(who), replace=False) + 1
                home_v4[who] = plan.isp_city_base(i, c) + offsets
    has_v6 = rng.random(n) < 0.35
    third = ((city + 1) << 8) | rng.integers(0, 256, n)
    fourth = rng.integers(1, 1 << 16, n)
    v6 = pl.select(
        pl.concat_str(
            pl.Series([plan.ISPS[i].v6_base for i in isp]),
            pl.lit(":"),
            plan.hextets(third),
            pl.lit(":"),
            plan.hextets(fourth),
        )
    ).to_series()
    v6_prefix = np.where(has_v6, v6.to_numpy().astype(object), "")
    has_phone = rng.random(n) < 0.78
    carrier = np.where(has_phone, rng.choice(len(plan.CARRIERS), n, p=np.array(plan.CARRIER_SHARE)), -1)
    has_desktop = rng.random(n) < 0.6
    uses_pop3 = _at_least(rng, has_desktop & (rng.random(n) < 0.15), has_desktop, 2)
    uses_webmail = (rng.random(n) < 0.3) | ~(has_desktop | has_phone)
    is_practitioner = rng.random(n) < practitioner_share
    prof_names = np.array([p for p, _ in PROFESSIONS], dtype=object)
    prof_w = np.array([w for _, w in PROFESSIONS])
    profession = np.where(
        is_practitioner, prof_names[rng.choice(len(prof_w), n, p=prof_w / prof_w.sum())], ""
    )

    n_hosp = max(2, n // 600)
    n_clin = max(3, n // 300)
    big_cities = np.argsort(-weights, kind="stable")[:10]
    hospitals = [
        (f"{'CHU' if k % 2 == 0 else 'Centre Hospitalier'} de {plan.DOMESTIC_CITIES[c].name}", int(c))
        for k, c in enumerate(big_cities[np.arange(n_hosp) % len(big_cities)])
    ]
    hospitals = [
        (name if k < len(big_cities) else f"{name} {k // len(big_cities) + 1}", c)
        for k, (name, c) in enumerate(hospitals)
    ]
    clinic_city = rng.choice(len(weights), n_clin, p=weights / weights.sum())
    clinics = [
        (
            f"Clinique {CLINIC_NAMES[k % len(CLINIC_NAMES)]}{'' if k < len(CLINIC_NAMES) else f' {k // len(CLINIC_NAMES) + 1}'}",
            int(c),
        )
        for k, c in enumerate(clinic_city)
    ]
    hospital_nat = []
    for i in range(n_hosp):
        base = plan.v4int(plan.hospital_cidr(i).split("/")[0])
        hospital_nat.append(base + 1 + np.arange(int(rng.integers(1, 4))))
    clinic_nat = []
    for i in range(n_clin):
        _, cidr = plan.clinic_cidr(i)
        clinic_nat.append(np.array([plan.v4int(cidr.split("/")[0]) + 1 + int(rng.integers(0, 6))]))

    # Practitioners work in a hospital (near home when one exists) or a clinic, or on their own.
    u = rng.random(n)
    workplace_kind = np.where(is_practitioner & (u < 0.38), 1, np.where(is_practitioner & (u < 0.55), 2, 0))
    workplace_kind = np.where(~is_practitioner & (u < 0.05), 1, workplace_kind)
    # Even a tiny world has a hospital team and a clinic team.
    for kind in (1, 2):
        free = is_practitioner & (workplace_kind == 0)
        workplace_kind[_at_least(rng, workplace_kind == kind, free, 3) & free] = kind
    hosp_city = np.array([c for _, c in hospitals])
    clin_city = np.array([c for _, c in clinics])
    workplace = np.zeros(n, dtype=np.int64)
    for kind, cities in ((1, hosp_city), (2, clin_city)):
        who = np.flatnonzero(workplace_kind == kind)
        local = cities[None, :] == city[who, None]
        pick_local = rng.random(len(who)) < 0.7
        rand_any = rng.integers(0, len(cities), len(who))
        # first local workplace when any and chosen, else any
        first_local = np.where(local.any(axis=1), local.argmax(axis=1), rand_any)
        workplace[who] = np.where(pick_local, first_local, rand_any)
    vpn_user = _at_least(rng, rng.random(n) < 0.025, has_desktop | uses_webmail, 2)
    activity = np.clip(rng.beta(5, 1.6, n), 0.05, 0.98)
    # Workers, VPN and POP3 users read mail every day.
    activity = np.where(vpn_user | uses_pop3 | (workplace_kind > 0), np.maximum(activity, 0.92), activity)
    return Population(
        account=account,
        city=city,
        isp=isp,
        home_v4=home_v4,
        has_v6=has_v6,
        v6_prefix=v6_prefix,
        carrier=carrier,
        has_desktop=has_desktop,
        uses_pop3=uses_pop3,
        uses_webmail=uses_webmail,
        workplace_kind=workplace_kind,
        workplace=workplace,
        is_practitioner=is_practitioner,
        profession=profession,
        vpn_user=vpn_user,
        activity=activity,
        hospitals=hospitals,
        clinics=clinics,
        hospital_nat=hospital_nat,
        clinic_nat=clinic_nat,
    )


def _at_least(rng: np.random.Generator, mask: np.ndarray, eligible: np.ndarray, k: int) -> np.ndarray:
    """``mask``, with random ``eligible`` members added until it has ``k`` (tiny worlds keep every habit)."""
    missing = k - int(mask.sum())
    if missing <= 0:
        return mask
    pool = np.flatnonzero(eligible & ~mask)
    out = mask.copy()
    out[pool[rng.permutation(len(pool))[:missing]]] = True
    return out


def _luhn_digit(body: np.ndarray) -> np.ndarray:
    """Luhn check digit of rows of digits (the RPPS number's key)."""
    digits = body[:, ::-1].copy()
    doubled = digits[:, 0::2] * 2
    digits[:, 0::2] = np.where(doubled > 9, doubled - 9, doubled)
    return (10 - digits.sum(axis=1) % 10) % 10


def directory(rng: np.random.Generator, pop: Population) -> pl.DataFrame:
    """The practitioner directory: account, profession, rpps (11 digits, Luhn key), organization."""
    who = np.flatnonzero(pop.is_practitioner)
    body = np.concatenate(
        [np.ones((len(who), 1), dtype=np.int64), rng.integers(0, 10, (len(who), 9))], axis=1
    )
    body[:, 1] = 0
    rpps = np.concatenate([body, _luhn_digit(body)[:, None]], axis=1)
    rpps_text = pl.DataFrame(rpps.astype(str)).select(pl.concat_str(pl.all()).alias("r"))["r"]
    org = np.full(len(who), "", dtype=object)
    kind = pop.workplace_kind[who]
    place = pop.workplace[who]
    for k in range(len(pop.hospitals)):
        org[(kind == 1) & (place == k)] = pop.hospitals[k][0]
    for k in range(len(pop.clinics)):
        org[(kind == 2) & (place == k)] = pop.clinics[k][0]
    # Directories are typed by hand: a few entries carry capitals.
    account = pop.account[who].copy()
    upper = rng.random(len(who)) < 0.03
    account[upper] = np.array([a.split("@")[0].title() + "@" + DOMAIN for a in account[upper]], dtype=object)
    frame = pl.DataFrame(
        {
            "account": account.astype(str),
            "profession": pop.profession[who].astype(str),
            "rpps": rpps_text,
            "organization": org.astype(str),
        }
    )
    return frame.with_columns(pl.col("organization").replace("", None)).sort("account")
