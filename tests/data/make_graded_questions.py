"""Writes tests/data/graded_questions.json: the graded question set of bench/quality.py.

Six kinds, each question with its accepted gold answers: ``arithmetic`` (seeded small sums,
differences and products), ``capitals``, ``facts`` (one-word facts), ``units`` (exact
conversions), ``yesno`` and ``reasoning`` (one-step word problems). Deterministic (seed 9).
"""
import json
import random
from pathlib import Path

CAPITALS = [
 ("France", "Paris"), ("Germany", "Berlin"), ("Italy", "Rome"), ("Spain", "Madrid"), ("Portugal", "Lisbon"),
 ("Japan", "Tokyo"), ("China", "Beijing"), ("India", "New Delhi"), ("Russia", "Moscow"), ("Canada", "Ottawa"),
 ("Australia", "Canberra"), ("Brazil", "Brasilia"), ("Argentina", "Buenos Aires"), ("Mexico", "Mexico City"),
 ("Egypt", "Cairo"), ("Kenya", "Nairobi"), ("Nigeria", "Abuja"), ("South Korea", "Seoul"), ("Thailand", "Bangkok"),
 ("Vietnam", "Hanoi"), ("Indonesia", "Jakarta"), ("Turkey", "Ankara"), ("Greece", "Athens"), ("Poland", "Warsaw"),
 ("Sweden", "Stockholm"), ("Norway", "Oslo"), ("Finland", "Helsinki"), ("Denmark", "Copenhagen"),
 ("Netherlands", "Amsterdam"), ("Belgium", "Brussels"), ("Austria", "Vienna"), ("Switzerland", "Bern"),
 ("Ireland", "Dublin"), ("Hungary", "Budapest"), ("Czech Republic", "Prague"), ("Romania", "Bucharest"),
 ("Ukraine", "Kyiv"), ("Peru", "Lima"), ("Chile", "Santiago"), ("Colombia", "Bogota"), ("Venezuela", "Caracas"),
 ("Cuba", "Havana"), ("Iran", "Tehran"), ("Iraq", "Baghdad"), ("Saudi Arabia", "Riyadh"), ("Israel", "Jerusalem"),
 ("Pakistan", "Islamabad"), ("Bangladesh", "Dhaka"), ("Philippines", "Manila"), ("Malaysia", "Kuala Lumpur"),
 ("New Zealand", "Wellington"), ("South Africa", "Pretoria"), ("Morocco", "Rabat"), ("Ethiopia", "Addis Ababa"),
 ("Ghana", "Accra"), ("Iceland", "Reykjavik"), ("Scotland", "Edinburgh"), ("England", "London"),
 ("the United States", "Washington"), ("Afghanistan", "Kabul"), ("Nepal", "Kathmandu"), ("Syria", "Damascus"),
 ("Lebanon", "Beirut"), ("Jordan", "Amman"), ("Qatar", "Doha"), ("Serbia", "Belgrade"), ("Croatia", "Zagreb"),
 ("Bulgaria", "Sofia"), ("Slovakia", "Bratislava"), ("Estonia", "Tallinn"),
]
FACTS = [
 ("What is the largest planet in our solar system?", ["Jupiter"]),
 ("Which planet is known as the Red Planet?", ["Mars"]),
 ("What is the closest planet to the Sun?", ["Mercury"]),
 ("What gas do plants absorb from the air?", ["carbon dioxide", "CO2"]),
 ("What gas do humans need to breathe to live?", ["oxygen"]),
 ("Who wrote Romeo and Juliet?", ["Shakespeare"]),
 ("Who painted the Mona Lisa?", ["Leonardo", "da Vinci"]),
 ("Who developed the theory of relativity?", ["Einstein"]),
 ("What is the chemical symbol for gold?", ["Au"]),
 ("What is the chemical symbol for iron?", ["Fe"]),
 ("What is the chemical symbol for sodium?", ["Na"]),
 ("What is the hardest natural substance?", ["diamond"]),
 ("What is the largest ocean on Earth?", ["Pacific"]),
 ("What is the longest river in Africa?", ["Nile"]),
 ("What is the tallest mountain in the world?", ["Everest"]),
 ("What is the largest mammal?", ["blue whale", "whale"]),
 ("What do bees make?", ["honey"]),
 ("What is frozen water called?", ["ice"]),
 ("What color is the sky on a clear day?", ["blue"]),
 ("What color are ripe bananas?", ["yellow"]),
 ("What colour do you get by mixing blue and yellow?", ["green"]),
 ("Which organ pumps blood through the body?", ["heart"]),
 ("Which organ do humans use to breathe?", ["lungs", "lung"]),
 ("What is the main language spoken in Brazil?", ["Portuguese"]),
 ("What is the currency of Japan?", ["yen"]),
 ("What is the currency of the United Kingdom?", ["pound"]),
 ("What metal is liquid at room temperature?", ["mercury"]),
 ("What is the largest desert in Africa?", ["Sahara"]),
 ("Which animal is known as the king of the jungle?", ["lion"]),
 ("What is the fastest land animal?", ["cheetah"]),
 ("Which bird is a symbol of peace?", ["dove"]),
 ("What do caterpillars turn into?", ["butterflies", "butterfly", "moth"]),
 ("What is the opposite of hot?", ["cold"]),
 ("What is the opposite of up?", ["down"]),
 ("What is the first letter of the English alphabet?", ["A"]),
 ("Which continent is Egypt in?", ["Africa"]),
 ("Which continent is France in?", ["Europe"]),
 ("Which star is at the centre of our solar system?", ["Sun"]),
 ("What is the natural satellite of the Earth called?", ["Moon"]),
 ("What instrument has 88 keys?", ["piano"]),
 ("What do you call a baby dog?", ["puppy"]),
 ("What do you call a baby cat?", ["kitten"]),
 ("What is the main ingredient of guacamole?", ["avocado"]),
 ("What is the boiling state of water called: steam or ice?", ["steam"]),
 ("Who was the first person to walk on the Moon?", ["Armstrong"]),
 ("In which country are the pyramids of Giza?", ["Egypt"]),
 ("In which city is the Eiffel Tower?", ["Paris"]),
 ("What is the largest country by area?", ["Russia"]),
 ("What language is spoken in Mexico?", ["Spanish"]),
 ("What is H2O commonly called?", ["water"]),
]
YESNO = [
 ("Is the Sun a star?", "yes"), ("Is a whale a fish?", "no"), ("Can penguins fly?", "no"),
 ("Is water wet?", "yes"), ("Is the Earth flat?", "no"), ("Is Paris in France?", "yes"),
 ("Is Tokyo the capital of China?", "no"), ("Do fish live in water?", "yes"), ("Is ice colder than steam?", "yes"),
 ("Is 7 an even number?", "no"), ("Is 10 an even number?", "yes"), ("Is 17 a prime number?", "yes"),
 ("Is 21 a prime number?", "no"), ("Do spiders have six legs?", "no"), ("Do cats have four legs?", "yes"),
 ("Is the Moon bigger than the Earth?", "no"), ("Is the Pacific an ocean?", "yes"), ("Is gold a metal?", "yes"),
 ("Is a tomato a vegetable in botany?", "no"), ("Do plants need sunlight to grow?", "yes"),
 ("Is Mount Everest in Africa?", "no"), ("Is the Nile a river?", "yes"), ("Can humans breathe underwater without equipment?", "no"),
 ("Is 100 greater than 99?", "yes"), ("Is 3 greater than 5?", "no"), ("Does a week have seven days?", "yes"),
 ("Does a year have 13 months?", "no"), ("Is Berlin in Germany?", "yes"), ("Is Madrid the capital of Italy?", "no"),
 ("Are bats mammals?", "yes"), ("Are dolphins fish?", "no"), ("Is oxygen a gas at room temperature?", "yes"),
 ("Is the number 0 negative?", "no"), ("Is a square a kind of rectangle?", "yes"), ("Does the Sun rise in the west?", "no"),
 ("Is English spoken in Australia?", "yes"), ("Is snow cold?", "yes"), ("Do birds have feathers?", "yes"),
 ("Is a spider an insect?", "no"), ("Is the Atlantic larger than the Pacific?", "no"),
]
UNITS = [  # (question template, factor): value * factor
 ("How many centimetres are in {v} metres?", 100), ("How many metres are in {v} kilometres?", 1000),
 ("How many grams are in {v} kilograms?", 1000), ("How many minutes are in {v} hours?", 60),
 ("How many seconds are in {v} minutes?", 60), ("How many millilitres are in {v} litres?", 1000),
 ("How many days are in {v} weeks?", 7), ("How many months are in {v} years?", 12),
]
NAMES = ["Tom", "Anna", "Li", "Omar", "Sara", "Ken", "Maria", "Ivan", "Nia", "Paul"]
ITEMS = ["apples", "books", "coins", "marbles", "pencils", "cookies", "stamps", "cards"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def build(seed: int = 9) -> list[dict]:
    rng = random.Random(seed)
    out = []

    def add(kind, q, gold):
        out.append({"id": f"{kind}-{sum(1 for x in out if x['kind'] == kind):03d}", "kind": kind,
                    "question": q, "gold": [str(g) for g in gold]})

    for _ in range(30):
        a, b = rng.randint(2, 60), rng.randint(2, 60)
        add("arithmetic", f"What is {a} + {b}?", [a + b])
    for _ in range(25):
        a, b = rng.randint(20, 99), rng.randint(1, 19)
        add("arithmetic", f"What is {a} - {b}?", [a - b])
    for _ in range(25):
        a, b = rng.randint(2, 12), rng.randint(2, 12)
        add("arithmetic", f"What is {a} × {b}?", [a * b])
    for country, city in CAPITALS:
        add("capitals", f"What is the capital of {country}?", [city])
    for q, g in FACTS:
        add("facts", q, g)
    for tmpl, f in UNITS:
        for v in rng.sample(range(2, 10), 5):
            add("units", tmpl.format(v=v), [v * f])
    for q, g in YESNO:
        add("yesno", q, [g])
    for _ in range(12):
        n, it = rng.choice(NAMES), rng.choice(ITEMS)
        a, b = rng.randint(5, 20), rng.randint(1, 4)
        add("reasoning", f"{n} has {a} {it} and gives away {b}. How many {it} does {n} have left?", [a - b])
    for _ in range(10):
        n, it = rng.choice(NAMES), rng.choice(ITEMS)
        a, b = rng.randint(2, 6), rng.randint(2, 5)
        add("reasoning", f"{n} buys {a} bags with {b} {it} in each bag. How many {it} does {n} have?", [a * b])
    for i in range(7):
        add("reasoning", f"If today is {DAYS[i]}, what day is tomorrow?", [DAYS[(i + 1) % 7]])
    for _ in range(6):
        a = rng.randint(8, 15)
        b = rng.randint(2, 7)
        add("reasoning", f"A train leaves at {a}:00 and the trip takes {b} hours. At what hour does it arrive (24-hour clock)?",
            [a + b])
    return out


if __name__ == "__main__":
    qs = build()
    path = Path(__file__).with_name("graded_questions.json")
    path.write_text(json.dumps(qs, indent=1, ensure_ascii=False) + "\n")
    from collections import Counter
    print(path, len(qs), Counter(q["kind"] for q in qs))
