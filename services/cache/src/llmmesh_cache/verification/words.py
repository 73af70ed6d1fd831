"""The word lists prompts are read with: function words, request framing, synonyms, classes.

Every word not listed as a function word is a content word, and verification requires each
content word of one prompt to be matched in the other. So the lists are the only way two
prompts may differ: a word missing here can only cost a hit, while a wrong entry (a
"synonym" that is not one, a "function word" that changes the answer) can serve a wrong
answer. Entries are therefore limited to words that never change what is asked.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

SPEAKER = "<speaker>"  # I, me, we, us, generic you: whoever asks
NEGATION = "<not>"
NEVER = "<never>"
WITHOUT = "<without>"
POSSIBILITY = "<can>"  # can, could, may, might
OBLIGATION = "<must>"  # must, have to, need to
ADVICE = "<should>"  # should, ought to


@dataclasses.dataclass(frozen=True)
class LanguageWords:
    """How one language's prompts are read."""

    # Words that never change the answer (articles, auxiliaries, generic prepositions).
    function_words: frozenset[str]
    # Verbs that only frame a request when they open a clause ("explain", "list", "tell").
    request_verbs: frozenset[str]
    # Word sequences replaced before anything else; an empty replacement drops them.
    phrases: dict[tuple[str, ...], tuple[str, ...]]
    # Words that stand for a class: pronouns by person, negations, modals.
    classes: dict[str, str]
    # Lemma -> canonical lemma for words that mean the same in any question.
    synonyms: dict[str, str]
    # Words after which the next content word takes a role a reordering would change.
    role_markers: frozenset[str]
    # Words that join items whose order does not matter ("A and B", "A or B").
    coordinators: frozenset[str]
    # The most words any phrase has (phrases are looked up at most this far ahead).
    longest_phrase: int = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        longest = max((len(key) for key in self.phrases), default=0)
        object.__setattr__(self, "longest_phrase", longest)


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


def _phrases(table: dict[str, str]) -> dict[tuple[str, ...], tuple[str, ...]]:
    return {tuple(key.split()): tuple(value.split()) for key, value in table.items()}


def _classes(table: dict[str, str]) -> dict[str, str]:
    return {word: key for key, words in table.items() for word in words.split()}


def _clusters(clusters: Iterable[str]) -> dict[str, str]:
    """Each cluster is "canonical other other"; every word maps to the first."""
    mapping: dict[str, str] = {}
    for cluster in clusters:
        canonical, *others = cluster.split()
        for word in others:
            mapping[word] = canonical
    return mapping


ENGLISH_REQUEST_VERBS = _words(
    "tell explain describe list name give show provide define state identify find calculate "
    "compute determine recommend suggest outline help share"
)

# Verbs that name the task itself, kept when a polite "could you" before them is dropped.
ENGLISH_TASK_VERBS = ("summarize", "summarise", "translate", "write", "compose", "draft",
                      "convert", "rewrite", "proofread", "fix", "check")  # fmt: skip

ENGLISH = LanguageWords(
    function_words=_words(
        "a an the this that these those some any each "
        "be am is are was were been being do does did doing done have has had having "
        "will would shall it its there here "
        "of in on at for with to by about as via into onto per between among within "
        "through throughout during while and & if whether what which whatever "
        "my mine our ours your yours "
        "please kindly pls plz thanks thank hey hi hello just really actually basically "
        "exactly simply also now currently current much many approximately roughly approx "
        "thing things stuff something anything someone anyone somebody anybody way ways "
        "use using utilize ok okay etc eg ie let mean means meaning meant definition define "
        "question"
    ),
    request_verbs=ENGLISH_REQUEST_VERBS,
    phrases=_phrases(
        {
            # Ways of asking how, where, when or what that do not change the question.
            **{
                f"{wh} {aux} {who}": wh
                for wh in ("how", "what", "where", "when")
                for aux in ("do", "can", "should", "would", "could")
                for who in ("i", "you", "we", "one")
            },
            **{f"{wh} does one": wh for wh in ("how", "what", "where", "when")},
            # "Could you list", "can you please explain", "would you tell me".
            **{
                f"{modal} you{please} {verb}{me}": ""
                for modal in ("can", "could", "would", "will")
                for please in ("", " please")
                for verb in ENGLISH_REQUEST_VERBS
                for me in ("", " me", " us")
            },
            # "Can you summarize X" asks what "Summarize X" asks.
            **{
                f"{modal} you{please} {verb}": verb
                for modal in ("can", "could", "would", "will")
                for please in ("", " please")
                for verb in ENGLISH_TASK_VERBS
            },
            "how to": "how",
            **{
                f"{start} way to": "how"
                for start in ("what is the", "what is a", "what is one", "is there a")
            },
            **{f"what {aux} i do to": "how" for aux in ("can", "should", "do", "could")},
            "find out": "find",
            "capital city": "capital",
            "what to": "what",
            "where to": "where",
            "when to": "when",
            # Framing around the request itself.
            "i want to know": "",
            "i would like to know": "",
            "i need to know": "",
            "i wonder": "",
            "i am wondering": "",
            "i was wondering": "",
            "i am curious": "",
            "do you know": "",
            "let me know": "",
            "help me understand": "",
            "tell me": "",
            "give me": "",
            "show me": "",
            "explain to me": "",
            "to me": "",
            "for me": "",
            "quick question": "",
            "is it true that": "",
            "in order to": "",
            "as well as": "and",
            "a lot of": "lot",
            "lots of": "lot",
            # Modal phrases that say the same as a modal verb.
            "have to": OBLIGATION,
            "has to": OBLIGATION,
            "had to": OBLIGATION,
            "need to": OBLIGATION,
            "needs to": OBLIGATION,
            "required to": OBLIGATION,
            "ought to": ADVICE,
            # Frequencies.
            "per day": "daily",
            "a day": "daily",
            "each day": "daily",
            "every day": "daily",
            "per week": "weekly",
            "a week": "weekly",
            "per month": "monthly",
            "a month": "monthly",
            "per year": "yearly",
            "a year": "yearly",
            "per hour": "hourly",
            "an hour": "hourly",
            # Names with a common short form.
            "united states of america": "usa",
            "united states": "usa",
            "united kingdom": "uk",
            "european union": "eu",
            "new york city": "nyc",
            "world war ii": "ww2",
            "world war 2": "ww2",
            "world war two": "ww2",
            "second world war": "ww2",
            "wwii": "ww2",
            "world war i": "ww1",
            "world war 1": "ww1",
            "world war one": "ww1",
            "first world war": "ww1",
            "wwi": "ww1",
            "artificial intelligence": "ai",
            "machine learning": "ml",
            "operating system": "os",
            "degrees celsius": "celsius",
            "degree celsius": "celsius",
            "degrees fahrenheit": "fahrenheit",
            "degree fahrenheit": "fahrenheit",
            "sum up": "summary",
            "compared to": "compare",
            "compared with": "compare",
            "in comparison to": "compare",
            "pros and cons": "advantage and disadvantage",
            "e mail": "email",
        }
    ),
    classes=_classes(
        {
            SPEAKER: "i me myself we us ourselves you yourself yourselves",
            "<he>": "he him himself his",
            "<she>": "she her hers herself",
            "<they>": "they them themselves their theirs",
            "<who>": "who whom whose",
            NEGATION: "not no none nobody nothing nowhere neither nor cannot",
            NEVER: "never",
            WITHOUT: "without",
            POSSIBILITY: "can could may might",
            OBLIGATION: "must",
            ADVICE: "should",
        }
    ),
    synonyms=_clusters(
        [
            "big large",
            "buy purchase",
            "start begin commence",
            "end finish",
            "fix repair",
            "car automobile",
            "fast quick rapid speedy",
            "child kid",
            "movie film",
            "doctor physician",
            "medicine medication",
            "sick ill",
            "help assist",
            "remove delete erase drop",
            "choose pick select",
            "need require",
            "maybe perhaps",
            "often frequently",
            "happen occur",
            "try attempt",
            "answer reply respond response",
            "price cost",
            "cheap inexpensive",
            "expensive costly pricey",
            "rich wealthy",
            "allow permit",
            "change modify alter",
            "stomach belly tummy",
            "pants trousers",
            "couch sofa",
            "trash garbage rubbish",
            "get obtain acquire",
            "dangerous unsafe hazardous",
            "hard difficult",
            "easy simple",
            "smart intelligent clever",
            "website site",
            "photo picture pic photograph",
            "television tv",
            "information info",
            "repository repo",
            "directory folder dir",
            "configuration config",
            "environment env",
            "documentation docs",
            "database db",
            "parameter param",
            "variable var",
            "message msg",
            "package pkg",
            "library lib",
            "compare comparison difference differ different versus vs contrast",
            "cause reason",
            "death die",
            "birth born",
            "marry marriage wed",
            "increase boost",
            "decrease reduce",
            "stop quit exit",
            "calculate compute",
            "write compose draft",
            "merge combine",
            "build construct",
            "dictionary dict",
            "application app",
            "near close nearby",
            "usually normally typically generally",
            "summary summarize summarise summarization recap overview tldr",
            "advantage pro pros benefit upside",
            "disadvantage con cons drawback downside",
            "mother mom mum",
            "father dad",
            "baby infant",
            "teenager teen adolescent",
            "pregnant pregnancy",
            "acetaminophen paracetamol tylenol",
            "ibuprofen advil motrin",
            "flu influenza",
            "lawyer attorney",
            "illegal unlawful",
            "legal lawful",
            "refrigerator fridge",
            "run execute",
            "terminate kill",
            "find locate",
            "country nation",
            "high tall height",
            "weight weigh",
            "length long",
            "distance far",
            "depth deep",
            "width wide",
            "yearly annual annually",
            "km kilometer kilometre kilometers kilometres",
            "mile miles mi",
            "meter metre meters metres",
            "cm centimeter centimetre",
            "mm millimeter millimetre",
            "foot feet ft",
            "inch inches",
            "kg kilogram kilogramme kilo kilos",
            "gram g gramme",
            "pound lb lbs",
            "ounce oz",
            "liter litre l",
            "ml milliliter millilitre",
            "mg milligram milligramme",
            "celsius centigrade °c",
            "fahrenheit °f",
            "second sec secs",
            "minute min mins",
            "hour hr hrs",
            "usd dollar $",
            "eur euro €",
            "gbp sterling £",
            "percent percentage %",
            "gb gigabyte",
            "mb megabyte",
            "kb kilobyte",
            "tb terabyte",
            "kph kmh",
            "kw kilowatt",
            "calorie kcal",
        ]
    ),
    role_markers=_words(
        "from to into onto than by over under above below before after against toward "
        "towards until till since in of for with on at"
    ),
    coordinators=_words("and or & , vs versus nor"),
)

# Comparatives and superlatives whose lemma would be their positive form ("better" ->
# "good"): they stay as written, since "good" and "best" ask different things.
IRREGULAR_DEGREES = _words(
    "better best worse worst more most less least fewer fewest further furthest farther "
    "farthest elder eldest"
)

NUMBER_WORDS = {
    "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
    "seven": "7", "eight": "8", "nine": "9", "ten": "10", "eleven": "11", "twelve": "12",
    "thirteen": "13", "fourteen": "14", "fifteen": "15", "sixteen": "16", "seventeen": "17",
    "eighteen": "18", "nineteen": "19", "twenty": "20", "thirty": "30", "forty": "40",
    "fifty": "50", "sixty": "60", "seventy": "70", "eighty": "80", "ninety": "90",
    "hundred": "100", "thousand": "1000", "dozen": "12",
    "first": "1st", "third": "3rd", "fourth": "4th", "fifth": "5th", "sixth": "6th",
    "seventh": "7th", "eighth": "8th", "ninth": "9th", "tenth": "10th",
}  # fmt: skip


GERMAN = LanguageWords(
    function_words=_words(
        "der die das den dem des ein eine einen einem einer eines ist sind war waren sein "
        "bin bist seid wird werden wurde wurden hat haben hatte hatten habe es im in am an "
        "auf für mit bei zum zur vom und was welche welcher welches welchen bitte mein meine "
        "meinen meinem dein deine ihr ihre unser unsere denn eigentlich genau etwa ungefähr "
        "ca gibt also so"
    ),
    request_verbs=_words(
        "erkläre erklären erklärt nenne nennen beschreibe beschreiben zeige zeigen gib geben "
        "liste sag sage sagen"
    ),
    phrases=_phrases(
        {
            "sag mir": "",
            "sagen sie mir": "",
            "können sie": "",
            "kannst du": "",
            "wie viel": "wieviel",
            "wie viele": "wieviel",
            "pro tag": "täglich",
            "am tag": "täglich",
        }
    ),
    classes=_classes(
        {
            SPEAKER: "ich mich mir wir uns du dich dir man",
            "<he>": "er ihn ihm",
            NEGATION: "nicht kein keine keinen keinem keiner",
            NEVER: "nie niemals",
            WITHOUT: "ohne",
            POSSIBILITY: "kann können darf dürfen",
            OBLIGATION: "muss müssen",
            ADVICE: "soll sollte sollen",
        }
    ),
    synonyms=_clusters(["anfangen beginnen starten", "arzt doktor"]),
    role_markers=_words("von nach zu bis als gegen vor"),
    coordinators=_words("und oder , vs"),
)

FRENCH = LanguageWords(
    function_words=_words(
        "le la les l un une des du de d est sont était étaient être ai as a avons ont avez "
        "suis ce cet cette ces c quel quelle quels quelles que qu et pour avec dans en sur au "
        "aux par y ne mon ma mes ton ta tes votre vos notre nos son sa ses leur leurs se s "
        "donc exactement environ svp"
    ),
    request_verbs=_words(
        "dites dis explique expliquez donne donnez liste listez nomme nommez décris décrivez "
        "montre montrez indique indiquez"
    ),
    phrases=_phrases(
        {
            "s il vous plaît": "",
            "s il te plaît": "",
            "pouvez vous": "",
            "peux tu": "",
            "est ce que": "",
            "dites moi": "",
            "dis moi": "",
            "par jour": "quotidien",
        }
    ),
    classes=_classes(
        {
            SPEAKER: "je j me m moi tu te t toi vous nous on",
            "<he>": "il lui",
            "<she>": "elle",
            "<they>": "ils elles",
            "<who>": "qui",
            NEGATION: "pas aucun aucune rien",
            NEVER: "jamais",
            WITHOUT: "sans",
            POSSIBILITY: "peut peux pouvez puis",
            OBLIGATION: "doit dois devez",
        }
    ),
    synonyms=_clusters(["commencer débuter", "médecin docteur"]),
    role_markers=_words("à vers que jusqu jusque contre avant après"),
    coordinators=_words("et ou , vs"),
)

SPANISH = LanguageWords(
    function_words=_words(
        "el la los las un una unos unas lo es son era eran ser está están estar fue fueron "
        "ha han he hay de del al en con por para y e que qué cuál cuáles me mi mis tu tus su "
        "sus nuestro nuestra se le les exactamente aproximadamente"
    ),
    request_verbs=_words(
        "dime dígame explica explique explícame describe describa enumera lista nombra muestra dame"
    ),
    phrases=_phrases(
        {
            "por qué": "<why>",
            "por favor": "",
            "puedes": "",
            "puede usted": "",
            "al día": "diario",
            "por día": "diario",
        }
    ),
    classes=_classes(
        {
            SPEAKER: "yo tú usted ustedes nosotros nosotras te nos",
            "<he>": "él",
            "<she>": "ella",
            "<they>": "ellos ellas",
            "<who>": "quién quiénes",
            NEGATION: "no ningún ninguna ninguno nada",
            NEVER: "nunca jamás",
            WITHOUT: "sin",
            POSSIBILITY: "puedo puede",
            OBLIGATION: "debo debe",
        }
    ),
    synonyms=_clusters(["empezar comenzar iniciar", "médico doctor"]),
    role_markers=_words("a hacia hasta que contra antes después"),
    coordinators=_words("y e o u , vs"),
)

ITALIAN = LanguageWords(
    function_words=_words(
        "il lo la i gli le un uno una l è sono era erano essere stato stata ha hanno di del "
        "della dei delle degli dello da dal dalla in nel nella con per su sul sulla e ed che "
        "cosa qual quale quali mi me mio mia miei mie tuo tua suo sua nostro nostra si ci c "
        "esattamente circa"
    ),
    request_verbs=_words("dimmi spiega spieghi spiegami descrivi elenca nomina mostra dammi"),
    phrases=_phrases({"per favore": "", "puoi": "", "può": "", "al giorno": "giornaliero"}),
    classes=_classes(
        {
            SPEAKER: "io tu noi voi ti te",
            "<he>": "lui",
            "<they>": "loro",
            "<who>": "chi",
            NEGATION: "non nessuno nessuna niente nulla",
            NEVER: "mai",
            WITHOUT: "senza",
            POSSIBILITY: "posso",
            OBLIGATION: "devo deve",
        }
    ),
    synonyms=_clusters(["iniziare cominciare", "medico dottore"]),
    role_markers=_words("a verso fino contro prima dopo"),
    coordinators=_words("e ed o , vs"),
)

PORTUGUESE = LanguageWords(
    function_words=_words(
        "o a os as um uma uns umas é são era eram ser estar está estão foi foram tem têm há "
        "de do da dos das em no na nos nas com por para pelo pela e que qual quais me meu "
        "minha meus minhas seu sua seus suas nosso nossa se lhe exatamente aproximadamente"
    ),
    request_verbs=_words("diga diz explique explica descreva liste enumere nomeie mostre dê"),
    phrases=_phrases(
        {
            "por que": "<why>",
            "por quê": "<why>",
            "por favor": "",
            "você pode": "",
            "pode me": "",
            "por dia": "diário",
            "ao dia": "diário",
        }
    ),
    classes=_classes(
        {
            SPEAKER: "eu você vocês nós tu te mim",
            "<he>": "ele",
            "<she>": "ela",
            "<they>": "eles elas",
            "<who>": "quem",
            NEGATION: "não nenhum nenhuma nada",
            NEVER: "nunca jamais",
            WITHOUT: "sem",
            POSSIBILITY: "posso pode",
            OBLIGATION: "devo deve",
        }
    ),
    synonyms=_clusters(["começar iniciar", "médico doutor"]),
    role_markers=_words("para até contra antes depois"),
    coordinators=_words("e ou , vs"),
)

LANGUAGES: dict[str, LanguageWords] = {
    "en": ENGLISH,
    "de": GERMAN,
    "fr": FRENCH,
    "es": SPANISH,
    "it": ITALIAN,
    "pt": PORTUGUESE,
}

# Function words that tell a Latin-script prompt's language; only the distinctive ones.
LANGUAGE_MARKERS: dict[str, frozenset[str]] = {
    "en": _words("the is are what how of and does do which who why with can you my it this "
                 "should i"),
    "fr": _words("le les est quelle quel quels des et comment une du pourquoi qui avec je "
                 "vous sont dans pour au aux ce cette moi qu c'est"),
    "de": _words("der die das ist was wie und ein eine von warum wer mit ich sind den dem "
                 "nicht welche welcher mir zu im es"),
    "es": _words("el los las es que qué cómo y una por para quién cuál con yo son del está "
                 "dónde mi se lo"),
    "it": _words("il gli è che come di una perché chi con sono della del qual quale cosa "
                 "mi nel"),
    "pt": _words("o os é como um uma por para quem qual com eu são do da não em onde você"),
}  # fmt: skip
