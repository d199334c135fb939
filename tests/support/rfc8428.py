"""The examples of RFC 8428 (SenML) §5 and §6, as the RFC prints them (JSON text, and the CBOR
dump as bytes). ``tests/unit/iot_ingest/test_senml.py`` runs them through the normaliser, and
``tests/integration/iot_ingest/test_ingest_senml.py`` sends some through the broker."""

from __future__ import annotations

EX_511_SINGLE = """[
  {"n":"urn:dev:ow:10e2073a01080063","u":"Cel","v":23.1}
]"""

EX_512_MULTIPLE = """[
  {"bn":"urn:dev:ow:10e2073a01080063:","n":"voltage","u":"V","v":120.1},
  {"n":"current","u":"A","v":1.2}
]"""

EX_512_CURRENT_SERIES = """[
  {"bn":"urn:dev:ow:10e2073a0108006:","bt":1.276020076001e+09,
   "bu":"A","bver":5,
   "n":"voltage","u":"V","v":120.1},
  {"n":"current","t":-5,"v":1.2},
  {"n":"current","t":-4,"v":1.3},
  {"n":"current","t":-3,"v":1.4},
  {"n":"current","t":-2,"v":1.5},
  {"n":"current","t":-1,"v":1.6},
  {"n":"current","v":1.7}
]"""
BT_512 = 1.276020076001e09

# The SensML stream of §5.1.2 as printed: it goes on ("..."), so it is no complete JSON pack.
EX_512_STREAM_AS_PRINTED = """[
  {"bn":"urn:dev:ow:10e2073a01080063","bt":1.320067464e+09,
   "bu":"%RH","v":21.2},
  {"t":10,"v":21.3},
  {"t":20,"v":21.4},
  {"t":30,"v":21.4},
  {"t":40,"v":21.5},
  {"t":50,"v":21.5},
  {"t":60,"v":21.5},
  {"t":70,"v":21.6},
  {"t":80,"v":21.7},
...
"""
# ... and the records it shows, as one pack.
EX_512_STREAM_RECORDS = EX_512_STREAM_AS_PRINTED.replace("},\n...\n", "}\n]")
BT_STREAM = 1.320067464e09
STREAM = [
    (0, 21.2),
    (10, 21.3),
    (20, 21.4),
    (30, 21.4),
    (40, 21.5),
    (50, 21.5),
    (60, 21.5),
    (70, 21.6),
    (80, 21.7),
]

EX_513_MEASUREMENTS = """[
  {"bn":"urn:dev:ow:10e2073a01080063","bt":1.320067464e+09,
   "bu":"%RH","v":20},
  {"u":"lon","v":24.30621},
  {"u":"lat","v":60.07965},
  {"t":60,"v":20.3},
  {"u":"lon","t":60,"v":24.30622},
  {"u":"lat","t":60,"v":60.07965},
  {"t":120,"v":20.7},
  {"u":"lon","t":120,"v":24.30623},
  {"u":"lat","t":120,"v":60.07966},
  {"u":"%EL","t":150,"v":98},
  {"t":180,"v":21.2},
  {"u":"lon","t":180,"v":24.30628},
  {"u":"lat","t":180,"v":60.07967}
]"""

EX_514_RESOLVED = """[
  {"n":"urn:dev:ow:10e2073a01080063","u":"%RH","t":1.320067464e+09,
   "v":20},
  {"n":"urn:dev:ow:10e2073a01080063","u":"lon","t":1.320067464e+09,
   "v":24.30621},
  {"n":"urn:dev:ow:10e2073a01080063","u":"lat","t":1.320067464e+09,
   "v":60.07965},
  {"n":"urn:dev:ow:10e2073a01080063","u":"%RH","t":1.320067524e+09,
   "v":20.3},
  {"n":"urn:dev:ow:10e2073a01080063","u":"lon","t":1.320067524e+09,
   "v":24.30622},
  {"n":"urn:dev:ow:10e2073a01080063","u":"lat","t":1.320067524e+09,
   "v":60.07965},
  {"n":"urn:dev:ow:10e2073a01080063","u":"%RH","t":1.320067584e+09,
   "v":20.7},
  {"n":"urn:dev:ow:10e2073a01080063","u":"lon","t":1.320067584e+09,
   "v":24.30623},
  {"n":"urn:dev:ow:10e2073a01080063","u":"lat","t":1.320067584e+09,
   "v":60.07966},
  {"n":"urn:dev:ow:10e2073a01080063","u":"%EL","t":1.320067614e+09,
   "v":98},
  {"n":"urn:dev:ow:10e2073a01080063","u":"%RH","t":1.320067644e+09,
   "v":21.2},
  {"n":"urn:dev:ow:10e2073a01080063","u":"lon","t":1.320067644e+09,
   "v":24.30628},
  {"n":"urn:dev:ow:10e2073a01080063","u":"lat","t":1.320067644e+09,
   "v":60.07967}
]"""

EX_515_DATA_TYPES = """[
  {"bn":"urn:dev:ow:10e2073a01080063:","n":"temp","u":"Cel","v":23.1},
  {"n":"label","vs":"Machine Room"},
  {"n":"open","vb":false},
  {"n":"nfv-reader","vd":"aGkgCg"}
]"""

EX_516_COLLECTION = """[
  {"bn":"2001:db8::2/","bt":1.320078429e+09,
   "n":"temperature","u":"Cel","v":25.2},
  {"n":"humidity","u":"%RH","v":30},
  {"bn":"2001:db8::1/","n":"temperature","u":"Cel","v":12.3},
  {"n":"humidity","u":"%RH","v":67}
]"""
BT_516 = 1.320078429e09

EX_517_THERMOSTAT = """[
  {"bn":"urn:dev:ow:10e2073a01080063:"},
  {"n":"temp","u":"Cel","v":23.1},
  {"n":"heat","u":"/","v":1},
  {"n":"fan","u":"/","v":0}
]"""

EX_517_LIGHTS_ON = """[
  {"bt":1.320078429e+09,"bu":"/","n":"2001:db8::3","v":1},
  {"n":"2001:db8::4","v":1}
]"""

EX_517_LIGHTS_OFF = """[
  {"bt":1.320078429e+09,"bu":"/","n":"2001:db8::3","v":0.5},
  {"n":"2001:db8::4","v":0.5},
  {"n":"2001:db8::3","t":0.1,"v":0},
  {"n":"2001:db8::4","t":0.1,"v":0}
]"""

# §6: the CBOR dump of the second example of §5.1.2, byte for byte.
EX_6_CBOR = bytes.fromhex(
    "87a72178 1b75726e 3a646576 3a6f773a 31306532 30373361 30313038 3030363a"
    "22fb41d3 03a15b00 10622361 41200500 67766f6c 74616765 01615602 fb405e06"
    "66666666 66a30067 63757272 656e7406 2402fb3f f3333333 333333a3 00676375"
    "7272656e 740623 02fb3ff4 cccccccc cccda300 67637572 72656e74 062202fb3f"
    "f6666666 666666a3 00676375 7272656e 740621 02f93e00 a3006763 75727265 6e"
    "74062002 fb3ff999 99999999 9aa30067 63757272 656e7406 0002fb3f fb333333"
    "333333"
)
