"""What the customers send: a deterministic stream of upserts and user deletions per account.

Users come from a fixed pool per account (some anonymous: no identifiers ever); events of six kinds
with parameters of every type the CSV renders (strings with commas and quotes, numbers, booleans,
nulls, nested objects); event times a few minutes old, some days old (late); resent requests and
old events mixed into new requests (duplicates); now and then a burst of a thousand events or more.
The stream depends on the seed alone, never on what the store answered.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

COUNTRIES = ("DE", "FR", "TR", "US", "BR", "JP")
PLANS = ("free", "pro", "enterprise", None)
EVENT_WEIGHTS = {"page_view": 35, "email_open": 15, "add_to_cart": 15, "search": 15, "purchase": 10, "login": 10}


@dataclass(frozen=True)
class Upsert:
    at: datetime
    account: str
    body: dict[str, Any]


@dataclass(frozen=True)
class DeleteUser:
    at: datetime
    account: str
    user_id: str


USERS_PER_REQUEST = 5  # at most, in an ordinary request


@dataclass(frozen=True)
class AccountTraffic:
    """How busy an account is: requests per hour on average, bursts and user deletions per day."""

    account: str
    users: int
    requests_per_hour: float
    bursts_per_day: float = 1.0
    deletes_per_day: float = 2.0

    @property
    def burst_users(self) -> int:
        """Users in one burst: two thirds of the account's users, at most 200."""
        return min(200, self.users * 2 // 3)


def _iso(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


class Traffic:
    """The request stream of every account, planned one step of simulated time at a time."""

    def __init__(self, seed: int, accounts: list[AccountTraffic]):
        self.rng = random.Random(seed)
        self.accounts = accounts
        self.history: dict[str, list[dict[str, Any]]] = {a.account: [] for a in accounts}
        self.anonymous = {a.account: {u for u in range(a.users) if u % 7 == 3} for a in accounts}

    def plan(self, start: datetime, end: datetime) -> list[Upsert | DeleteUser]:
        """The requests sent in [start, end), in time order."""
        span = (end - start).total_seconds()
        items: list[Upsert | DeleteUser] = []
        for account in self.accounts:
            hours = span / 3600
            for _ in range(self._count(account.requests_per_hour * hours)):
                items.append(self._upsert(account, start + timedelta(seconds=self.rng.uniform(0, span))))
            for _ in range(self._count(account.bursts_per_day * hours / 24)):
                items.append(self._burst(account, start + timedelta(seconds=self.rng.uniform(0, span))))
            for _ in range(self._count(account.deletes_per_day * hours / 24)):
                user = self._user_id(account, self.rng.randrange(account.users))
                items.append(DeleteUser(start + timedelta(seconds=self.rng.uniform(0, span)), account.account, user))
        return sorted(items, key=lambda item: item.at)

    def _count(self, mean: float) -> int:
        """A Poisson-like count with the given mean (whole part always, the fraction by chance)."""
        whole = int(mean)
        return whole + (1 if self.rng.random() < mean - whole else 0)

    # ---------------------------------------------------------------- requests

    def _upsert(self, account: AccountTraffic, at: datetime) -> Upsert:
        history = self.history[account.account]
        roll = self.rng.random()
        if history and roll < 0.08:
            return Upsert(at, account.account, self.rng.choice(history[-100:]))  # a resent request
        users = [self._user(account, at) for _ in range(self.rng.randint(1, USERS_PER_REQUEST))]
        if history and roll < 0.15:
            users += self._old_events(history)  # some events sent before, sent again
        return self._remember(Upsert(at, account.account, {"users": users}))

    def _burst(self, account: AccountTraffic, at: datetime) -> Upsert:
        users = [self._user(account, at, events=self.rng.randint(4, 10)) for _ in range(account.burst_users)]
        return self._remember(Upsert(at, account.account, {"users": users}))

    def _remember(self, upsert: Upsert) -> Upsert:
        history = self.history[upsert.account]
        if sum(len(u.get("events", [])) for u in upsert.body["users"]) < 200:  # bursts are not resent whole
            history.append(upsert.body)
            del history[:-200]
        return upsert

    def _old_events(self, history: list[dict[str, Any]]) -> list[dict[str, Any]]:
        old = self.rng.choice(history[-200:])["users"]
        picked = []
        for user in self.rng.sample(old, min(2, len(old))):
            events = user.get("events", [])
            if events:
                picked.append({"user_id": user["user_id"], "events": events[: self.rng.randint(1, len(events))]})
        return picked

    def _user_id(self, account: AccountTraffic, number: int) -> str:
        return f"{account.account[0]}-user-{number:05d}"

    def _user(self, account: AccountTraffic, at: datetime, events: int | None = None) -> dict[str, Any]:
        number = self.rng.randrange(account.users)
        user: dict[str, Any] = {"user_id": self._user_id(account, number)}
        if number not in self.anonymous[account.account]:
            if self.rng.random() < 0.5:
                user["identifiers"] = {"email": f"u{number}@example.com", "crm_id": f"C{number:06d}"}
            if self.rng.random() < 0.6:
                user["attributes"] = self._attributes(number)
        count = self.rng.choice([0, 1, 1, 2, 3, 4, 6]) if events is None else events
        user["events"] = [self._event(at) for _ in range(count)]
        return user

    def _attributes(self, number: int) -> dict[str, Any]:
        rng = self.rng
        attributes: dict[str, Any] = {
            "email": f"u{number}@example.com",
            "plan": rng.choice(PLANS),
            "country": rng.choice(COUNTRIES),
        }
        if rng.random() < 0.3:
            attributes["score"] = rng.randint(0, 1000)
        if rng.random() < 0.2:
            attributes["prefs"] = {"news": rng.random() < 0.5, "langs": ["de", "en"]}
        return attributes

    # ---------------------------------------------------------------- events

    def _event(self, at: datetime) -> dict[str, Any]:
        rng = self.rng
        name = rng.choices(list(EVENT_WEIGHTS), weights=list(EVENT_WEIGHTS.values()))[0]
        if rng.random() < 0.05:
            when = at - timedelta(days=rng.uniform(1, 6))  # late: the event happened days ago
        else:
            when = at - timedelta(seconds=rng.uniform(0, 900))
        event: dict[str, Any] = {"event_name": name, "timestamp": _iso(when)}
        params = PARAMS[name](rng)
        if params or rng.random() < 0.5:
            event["event_params"] = params
        return event


def _purchase(rng: random.Random) -> dict[str, Any]:
    return {
        "price": round(rng.uniform(1, 500), 2),
        "currency": rng.choice(["EUR", "USD", "TRY"]),
        "sku": f"SKU-{rng.randint(1, 999):03d}",
        "quantity": rng.randint(1, 5),
        "coupon": rng.choice([None, "", "WINTER,24", 'say "hi"']),
    }


def _page_view(rng: random.Random) -> dict[str, Any]:
    return {
        "url": f'https://shop.example/p?id={rng.randint(1, 99)},{rng.randint(1, 9)}&q="x"',
        "referrer": rng.choice([None, "https://search.example/", "newsletter"]),
    }


def _email_open(rng: random.Random) -> dict[str, Any]:
    return {"campaign": f"c-{rng.randint(1, 30)}", "subject": rng.choice(["Grüße, Welt", "50% off\nnow", "Hi"])}


def _add_to_cart(rng: random.Random) -> dict[str, Any]:
    return {
        "sku": f"SKU-{rng.randint(1, 999):03d}",
        "quantity": rng.randint(1, 3),
        "price": rng.choice([9.99, 10, 0.5]),
    }


def _login(rng: random.Random) -> dict[str, Any]:
    return (
        {"method": rng.choice(["password", "sso", "magic link"]), "success": rng.random() < 0.9}
        if rng.random() < 0.8
        else {}
    )


def _search(rng: random.Random) -> dict[str, Any]:
    return {
        "query": rng.choice(['red "shoes"', "a,b", "çay"]),
        "results": rng.randint(0, 50),
        "filters": {"size": rng.choice([38, 42]), "tags": ["x", "y"]},
    }


PARAMS: dict[str, Callable[[random.Random], dict[str, Any]]] = {
    "purchase": _purchase,
    "page_view": _page_view,
    "email_open": _email_open,
    "add_to_cart": _add_to_cart,
    "login": _login,
    "search": _search,
}
