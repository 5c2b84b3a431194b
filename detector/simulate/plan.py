"""The invented address plan of the simulated world: who owns which addresses, where, and how flagged.

The plan is fixed (independent of the seed) so that a database built for one world describes any
other world of the same generator version. The ranges are invented: they look public (so that
enrichment looks them up instead of classifying them as reserved) but are assigned here to made-up
organisations; never use these databases on real logs.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass

import numpy as np
import polars as pl


@dataclass(frozen=True)
class City:
    name: str
    country: str
    latitude: float
    longitude: float
    weight: float = 1.0


@dataclass(frozen=True)
class Network:
    """One network of the plan, with the facts the GeoIP databases tell about it."""

    cidr: str
    kind: str
    asn: int
    as_org: str
    country: str
    city: str | None
    latitude: float
    longitude: float
    is_vpn: bool = False
    is_hosting: bool = False
    is_tor: bool = False
    is_residential_proxy: bool = False


DOMESTIC_CITIES: tuple[City, ...] = (
    City("Paris", "FR", 48.8566, 2.3522, 20),
    City("Marseille", "FR", 43.2965, 5.3698, 8),
    City("Lyon", "FR", 45.7640, 4.8357, 8),
    City("Toulouse", "FR", 43.6047, 1.4442, 6),
    City("Nice", "FR", 43.7102, 7.2620, 4),
    City("Nantes", "FR", 47.2184, -1.5536, 5),
    City("Strasbourg", "FR", 48.5734, 7.7521, 4),
    City("Montpellier", "FR", 43.6108, 3.8767, 4),
    City("Bordeaux", "FR", 44.8378, -0.5792, 5),
    City("Lille", "FR", 50.6292, 3.0573, 5),
    City("Rennes", "FR", 48.1173, -1.6778, 3),
    City("Reims", "FR", 49.2583, 4.0317, 2),
    City("Grenoble", "FR", 45.1885, 5.7245, 3),
    City("Dijon", "FR", 47.3220, 5.0415, 2),
    City("Brest", "FR", 48.3904, -4.4861, 2),
    City("Clermont-Ferrand", "FR", 45.7772, 3.0870, 2),
    City("Rouen", "FR", 49.4432, 1.0999, 2),
    City("Tours", "FR", 47.3941, 0.6848, 2),
    City("Limoges", "FR", 45.8336, 1.2611, 1),
    City("Amiens", "FR", 49.8941, 2.2958, 1),
)

FOREIGN_CITIES: tuple[City, ...] = (
    City("Madrid", "ES", 40.4168, -3.7038, 3),
    City("Rome", "IT", 41.9028, 12.4964, 3),
    City("Brussels", "BE", 50.8503, 4.3517, 3),
    City("Geneva", "CH", 46.2044, 6.1432, 3),
    City("Berlin", "DE", 52.5200, 13.4050, 2),
    City("London", "GB", 51.5072, -0.1276, 2),
    City("New York", "US", 40.7128, -74.0060, 2),
    City("Montreal", "CA", 45.5019, -73.5674, 2),
    City("Casablanca", "MA", 33.5731, -7.5898, 2),
    City("Dakar", "SN", 14.7167, -17.4677, 1),
    City("Tunis", "TN", 36.8065, 10.1815, 1),
    City("Tokyo", "JP", 35.6762, 139.6503, 1),
    City("Sao Paulo", "BR", -23.5558, -46.6396, 1),
    City("Hanoi", "VN", 21.0278, 105.8342, 1),
    City("Mumbai", "IN", 19.0760, 72.8777, 1),
    City("Jakarta", "ID", -6.2088, 106.8456, 1),
    City("Moscow", "RU", 55.7558, 37.6173, 1),
    City("Shanghai", "CN", 31.2304, 121.4737, 1),
    City("Kyiv", "UA", 50.4501, 30.5234, 1),
    City("Bangkok", "TH", 13.7563, 100.5018, 1),
)
"""Foreign cities; the first eight are where travellers go, all of them host proxies and bots."""

TRAVEL_CITIES = 8
FRANCE_CENTRE = (46.2276, 2.2137)


@dataclass(frozen=True)
class Isp:
    name: str
    asn: int
    v4_base: str
    """A /13: one /18 per domestic city, in city order."""
    v6_base: str
    """A /32: one /40 per city (third hextet's high byte = city index + 1)."""
    business_v4: str
    """A /20 of business lines (clinics, practices)."""


ISPS: tuple[Isp, ...] = (
    Isp("Hexagone Telecom", 38911, "81.48.0.0", "2a0e:4c80", "81.56.0.0/20"),
    Isp("Fibre Azur", 41557, "86.192.0.0", "2a0e:5d10", "86.200.0.0/20"),
    Isp("Reseau Bleu", 48210, "90.64.0.0", "2a0e:6e20", "90.72.0.0/20"),
    Isp("Boite Alpha", 51340, "78.192.0.0", "2a0e:7f30", "78.200.0.0/20"),
)
ISP_SHARE = (0.38, 0.24, 0.22, 0.16)
CITY_BLOCK = 1 << 14
"""Addresses per (ISP, city) /18. Offsets below HOUSEHOLD_SPAN are households; above, other customers."""
HOUSEHOLD_SPAN = 1 << 13


@dataclass(frozen=True)
class Carrier:
    name: str
    asn: int
    cgnat_v4: str
    """A /16 of CGNAT gateway addresses, geolocated at country level only."""


CARRIERS: tuple[Carrier, ...] = (
    Carrier("Mobilis France", 56120, "37.160.0.0"),
    Carrier("Onde Mobile", 57930, "92.184.0.0"),
    Carrier("Celtic Mobile", 60512, "176.128.0.0"),
)
CARRIER_SHARE = (0.45, 0.33, 0.22)

HOSPITAL_AS = (199410, "Groupement Hospitalier Numerique", "195.221.0.0")
"""Hospitals get a /28 each from this /16; clinics get a /29 from an ISP's business range."""

PROVIDER = Network(
    "185.112.40.0/24", "provider", 210050, "Medimail Hebergement", "FR", "Paris", 48.8566, 2.3522
)
IMAP_LIP = {"imap1": "185.112.40.11", "imap2": "185.112.40.12"}
WEBMAIL_LIP = "10.20.0.11"

VPN = ("Tunnelo VPN", 209850, "185.213.0.0")
VPN_LOCATIONS = ("Paris", "Amsterdam", "Frankfurt", "Zurich", "London", "New York")
VPN_COUNTRIES = ("FR", "NL", "DE", "CH", "GB", "US")
VPN_COORDS = (
    (48.8566, 2.3522),
    (52.3676, 4.9041),
    (50.1109, 8.6821),
    (47.3769, 8.5417),
    (51.5072, -0.1276),
    (40.7128, -74.0060),
)
VPN_EXITS_PER_LOCATION = 4

HOSTERS: tuple[tuple[str, int, str, str, str, float, float], ...] = (
    ("CloudNine Hosting", 206004, "45.140.0.0", "NL", "Amsterdam", 52.3676, 4.9041),
    ("Datacentre Boreal", 212100, "51.210.0.0", "FR", "Roubaix", 50.6942, 3.1746),
    ("Stackhost", 398100, "104.250.0.0", "US", "Ashburn", 39.0438, -77.4874),
    ("Offshore Servers", 50113, "91.243.0.0", "SC", None, -4.6796, 55.4920),
)
"""Hosting providers: name, ASN, /16 base, country, city, coordinates. Each /24 is one network."""
HOSTING_SUBNETS = 8
TOR = ("Freedom Relays", 60729, "185.220.96.0", "DE", "Frankfurt", 50.1109, 8.6821)
TOR_EXITS = 16

FOREIGN_ISP_BASE = "100.0.0.0"
"""Foreign residential ISPs: one /16 per foreign city from 100.0.0.0 (below the 100.64.0.0/10 CGNAT space)."""


def v4int(text: str) -> int:
    return int(ipaddress.IPv4Address(text))


def isp_city_base(isp: int, city: int) -> int:
    return v4int(ISPS[isp].v4_base) + city * CITY_BLOCK


def foreign_isp_name(i: int) -> tuple[str, int]:
    city = FOREIGN_CITIES[i]
    return f"{city.name} Broadband", 30100 + 7 * i


def hospital_cidr(i: int) -> str:
    base = v4int(HOSPITAL_AS[2]) + i * 16
    return f"{ipaddress.IPv4Address(base)}/28"


def clinic_cidr(i: int) -> tuple[int, str]:
    """A clinic's /29 and its ISP index (clinics are spread over the ISPs' business ranges)."""
    isp = i % len(ISPS)
    net = ipaddress.IPv4Network(ISPS[isp].business_v4)
    base = int(net.network_address) + (i // len(ISPS)) * 8
    return isp, f"{ipaddress.IPv4Address(base)}/29"


def vpn_exit(location: int, k: int) -> int:
    return v4int(VPN[2]) + (location << 8) + 10 + k


def hosting_base(hoster: int, subnet: int) -> int:
    return v4int(HOSTERS[hoster][2]) + (subnet << 8)


def tor_exit(k: int) -> int:
    return v4int(TOR[2]) + 3 + 7 * k


_CARRIER_BASE = np.array([v4int(c.cgnat_v4) for c in CARRIERS], dtype=np.int64)


def cgnat_gateway(carrier: np.ndarray | int, k: np.ndarray | int) -> np.ndarray:
    """The k-th CGNAT gateway address of a carrier (spread over its /16)."""
    return _CARRIER_BASE[np.asarray(carrier)] + 256 + np.asarray(k, dtype=np.int64) * 37 % 65000


def networks(hospitals: list[tuple[str, int]], clinics: list[tuple[str, int]]) -> list[Network]:
    """Every network of the plan. ``hospitals``/``clinics``: (name, domestic city index)."""
    out: list[Network] = [PROVIDER]
    for i, isp in enumerate(ISPS):
        for c, city in enumerate(DOMESTIC_CITIES):
            base = ipaddress.IPv4Address(isp_city_base(i, c))
            out.append(
                Network(
                    f"{base}/18", "isp", isp.asn, isp.name, "FR", city.name, city.latitude, city.longitude
                )
            )
            out.append(
                Network(
                    f"{isp.v6_base}:{c + 1:x}00::/40",
                    "isp",
                    isp.asn,
                    isp.name,
                    "FR",
                    city.name,
                    city.latitude,
                    city.longitude,
                )
            )
        net = ipaddress.IPv4Network(isp.business_v4)
        out.append(Network(str(net), "isp_business", isp.asn, isp.name, "FR", None, *FRANCE_CENTRE))
    for carrier in CARRIERS:
        out.append(
            Network(f"{carrier.cgnat_v4}/16", "mobile", carrier.asn, carrier.name, "FR", None, *FRANCE_CENTRE)
        )
    for i, (_name, c) in enumerate(hospitals):
        city = DOMESTIC_CITIES[c]
        out.append(
            Network(
                hospital_cidr(i),
                "hospital",
                HOSPITAL_AS[0],
                HOSPITAL_AS[1],
                "FR",
                city.name,
                city.latitude,
                city.longitude,
            )
        )
    for i, (_name, c) in enumerate(clinics):
        isp, cidr = clinic_cidr(i)
        city = DOMESTIC_CITIES[c]
        out.append(
            Network(
                cidr, "clinic", ISPS[isp].asn, ISPS[isp].name, "FR", city.name, city.latitude, city.longitude
            )
        )
    for loc, (country, (lat, lon)) in enumerate(zip(VPN_COUNTRIES, VPN_COORDS, strict=True)):
        base = ipaddress.IPv4Address(v4int(VPN[2]) + (loc << 8))
        out.append(
            Network(f"{base}/24", "vpn", VPN[1], VPN[0], country, VPN_LOCATIONS[loc], lat, lon, is_vpn=True)
        )
    for h, (name, asn, _base, country, city_name, lat, lon) in enumerate(HOSTERS):
        for s in range(HOSTING_SUBNETS):
            base = ipaddress.IPv4Address(hosting_base(h, s))
            out.append(
                Network(f"{base}/24", "hosting", asn, name, country, city_name, lat, lon, is_hosting=True)
            )
    name, asn, _base, country, city_name, lat, lon = TOR
    for k in range(TOR_EXITS):
        out.append(
            Network(
                f"{ipaddress.IPv4Address(tor_exit(k))}/32",
                "tor",
                asn,
                name,
                country,
                city_name,
                lat,
                lon,
                is_tor=True,
            )
        )
    for i, city in enumerate(FOREIGN_CITIES):
        org, asn = foreign_isp_name(i)
        base = ipaddress.IPv4Address(int(foreign_base(i)))
        out.append(
            Network(
                f"{base}/16", "foreign_isp", asn, org, city.country, city.name, city.latitude, city.longitude
            )
        )
    return out


def flagged_proxies(nets: list[Network], ips: list[str]) -> list[Network]:
    """/32 entries flagging ``ips`` as residential proxies, inheriting their enclosing network's facts."""
    index = sorted(
        ((ipaddress.ip_network(n.cidr), n) for n in nets if n.kind in {"isp", "mobile", "foreign_isp"}),
        key=lambda item: (item[0].version, int(item[0].network_address)),
    )
    out = []
    for text in sorted(set(ips), key=lambda t: ipaddress.ip_address(t).packed):
        addr = ipaddress.ip_address(text)
        for net, info in index:
            if addr.version == net.version and addr in net:
                out.append(
                    dataclasses.replace(
                        info,
                        cidr=f"{addr}/{addr.max_prefixlen}",
                        kind="residential_proxy",
                        is_residential_proxy=True,
                    )
                )
                break
    return out


def foreign_base(i: np.ndarray | int) -> np.ndarray | int:
    return int(ipaddress.IPv4Address(FOREIGN_ISP_BASE)) + (np.asarray(i) << 16)


_HEX = pl.Series("hex", [f"{i:x}" for i in range(1 << 16)])


def v4_text(ints: np.ndarray) -> pl.Series:
    """Dotted-quad text of IPv4 addresses given as integers (vectorised)."""
    a = np.asarray(ints, dtype=np.int64)
    parts = [pl.Series((a >> s) & 255).cast(pl.String) for s in (24, 16, 8, 0)]
    return pl.select(pl.concat_str(parts, separator=".")).to_series().rename("ip")


def hextets(values: np.ndarray) -> pl.Series:
    """Lower-case hex text of 16-bit values (no leading zeros, as in RFC 5952)."""
    return _HEX.gather(pl.Series(np.asarray(values, dtype=np.int64)))


def v6_text(prefix: pl.Series, iid: np.ndarray) -> pl.Series:
    """``prefix`` (four non-zero hextets, text) joined with a 64-bit interface id of non-zero hextets.

    Both halves avoid zero hextets so that the text is already canonical (no ``::`` compression).
    """
    cols = [prefix] + [hextets(iid[:, k]) for k in range(4)]
    return pl.select(pl.concat_str(cols, separator=":")).to_series().rename("ip")
