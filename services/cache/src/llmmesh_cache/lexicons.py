"""Small word lists the semantic-hit verifier compares prompts by.

They are deliberately small and conservative: a word missing here only means a near miss
is left to the similarity threshold, while a wrong entry could only reject a true hit.
"""

from __future__ import annotations

NEGATIONS = frozenset(
    {"not", "no", "never", "none", "nobody", "nothing", "neither", "nor", "without", "nowhere"}
)

NUMBER_WORDS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13,
    "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18,
    "nineteen": 19, "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60,
    "seventy": 70, "eighty": 80, "ninety": 90, "hundred": 100, "thousand": 1000,
    "million": 1_000_000, "billion": 1_000_000_000, "dozen": 12, "single": 1, "double": 2,
    "triple": 3, "twice": 2, "thrice": 3, "half": 0.5,
    "first": "1st", "second": "2nd", "third": "3rd", "fourth": "4th", "fifth": "5th",
    "sixth": "6th", "seventh": "7th", "eighth": "8th", "ninth": "9th", "tenth": "10th",
}  # fmt: skip

# Canonical unit for each spelling; spellings that are also common words ("in", "m") are
# left out on purpose.
UNITS = {
    "km": "km", "kilometer": "km", "kilometers": "km", "kilometre": "km", "kilometres": "km",
    "mile": "mile", "miles": "mile", "mi": "mile",
    "meter": "meter", "meters": "meter", "metre": "meter", "metres": "meter",
    "cm": "cm", "centimeter": "cm", "centimeters": "cm", "mm": "mm", "millimeter": "mm",
    "millimeters": "mm", "foot": "foot", "feet": "foot", "ft": "foot",
    "inch": "inch", "inches": "inch", "yard": "yard", "yards": "yard",
    "kg": "kg", "kilogram": "kg", "kilograms": "kg", "kilo": "kg", "kilos": "kg",
    "gram": "gram", "grams": "gram", "g": "gram", "pound": "pound", "pounds": "pound",
    "lb": "pound", "lbs": "pound", "ounce": "ounce", "ounces": "ounce", "oz": "ounce",
    "ton": "ton", "tons": "ton", "tonne": "ton", "tonnes": "ton",
    "liter": "liter", "liters": "liter", "litre": "liter", "litres": "liter",
    "ml": "ml", "milliliter": "ml", "milliliters": "ml", "gallon": "gallon", "gallons": "gallon",
    "cup": "cup", "cups": "cup", "celsius": "celsius", "centigrade": "celsius",
    "fahrenheit": "fahrenheit", "kelvin": "kelvin",
    "second": "second", "seconds": "second", "sec": "second", "secs": "second",
    "minute": "minute", "minutes": "minute", "min": "minute", "mins": "minute",
    "hour": "hour", "hours": "hour", "hr": "hour", "hrs": "hour", "day": "day", "days": "day",
    "week": "week", "weeks": "week", "month": "month", "months": "month",
    "year": "year", "years": "year",
    "dollar": "usd", "dollars": "usd", "usd": "usd", "euro": "eur", "euros": "eur",
    "eur": "eur", "yen": "jpy", "jpy": "jpy", "gbp": "gbp", "sterling": "gbp",
    "yuan": "cny", "rupee": "inr", "rupees": "inr",
    "byte": "byte", "bytes": "byte", "kb": "kb", "kilobyte": "kb", "kilobytes": "kb",
    "mb": "mb", "megabyte": "mb", "megabytes": "mb", "gb": "gb", "gigabyte": "gb",
    "gigabytes": "gb", "tb": "tb", "terabyte": "tb", "terabytes": "tb",
    "percent": "percent", "percentage": "percent", "mph": "mph", "kph": "kph", "kmh": "kph",
    "watt": "watt", "watts": "watt", "kw": "kw", "kilowatt": "kw", "kilowatts": "kw",
    "kwh": "kwh", "calorie": "calorie", "calories": "calorie", "kcal": "calorie",
    "joule": "joule", "joules": "joule", "volt": "volt", "volts": "volt",
    "acre": "acre", "acres": "acre", "hectare": "hectare", "hectares": "hectare",
}  # fmt: skip

UNIT_SYMBOLS = {"$": "usd", "€": "eur", "£": "gbp", "¥": "jpy", "%": "percent", "°c": "celsius",
                "°f": "fahrenheit"}  # fmt: skip

# Words that ask for a shape of answer; synonyms share a canonical word.
OUTPUT_FORMATS = {
    "json": "json", "yaml": "yaml", "yml": "yaml", "xml": "xml", "csv": "csv", "html": "html",
    "markdown": "markdown", "table": "table", "tables": "table", "tabular": "table",
    "list": "list", "bullet": "list", "bullets": "list", "bulleted": "list",
    "numbered": "numbered", "paragraph": "paragraph", "paragraphs": "paragraph",
    "sentence": "sentence", "sentences": "sentence", "essay": "essay", "poem": "poem",
    "haiku": "haiku", "limerick": "limerick", "sonnet": "sonnet", "tweet": "tweet",
    "email": "email", "letter": "letter", "code": "code", "snippet": "code",
    "diagram": "diagram", "chart": "chart", "outline": "outline", "summary": "summary",
    "tldr": "summary", "story": "story", "song": "song", "recipe": "recipe",
    "word": "word", "words": "word", "emoji": "emoji", "emojis": "emoji",
}  # fmt: skip

# Pairs of opposites; comparative and superlative forms are listed as pairs of their own.
ANTONYM_PAIRS = (
    ("hot", "cold"), ("warm", "cool"), ("hottest", "coldest"), ("big", "small"),
    ("bigger", "smaller"), ("biggest", "smallest"), ("large", "small"), ("largest", "smallest"),
    ("larger", "smaller"), ("tall", "short"), ("tallest", "shortest"), ("long", "short"),
    ("longest", "shortest"), ("longer", "shorter"), ("fast", "slow"), ("faster", "slower"),
    ("fastest", "slowest"), ("cheap", "expensive"), ("cheapest", "priciest"),
    ("high", "low"), ("higher", "lower"), ("highest", "lowest"), ("best", "worst"),
    ("better", "worse"), ("good", "bad"), ("more", "less"), ("more", "fewer"),
    ("most", "least"), ("increase", "decrease"), ("increases", "decreases"),
    ("raise", "lower"), ("gain", "lose"), ("win", "lose"), ("buy", "sell"),
    ("buying", "selling"), ("open", "close"), ("start", "stop"), ("begin", "end"),
    ("beginning", "end"), ("enable", "disable"), ("add", "remove"), ("encrypt", "decrypt"),
    ("encode", "decode"), ("compress", "decompress"), ("import", "export"),
    ("upload", "download"), ("push", "pull"), ("input", "output"), ("min", "max"),
    ("minimum", "maximum"), ("pros", "cons"), ("benefits", "risks"),
    ("benefits", "drawbacks"), ("strengths", "weaknesses"), ("positive", "negative"),
    ("true", "false"), ("safe", "dangerous"), ("easy", "hard"), ("easiest", "hardest"),
    ("easy", "difficult"), ("simple", "complex"), ("old", "new"), ("oldest", "newest"),
    ("older", "younger"), ("oldest", "youngest"), ("young", "old"), ("early", "late"),
    ("earliest", "latest"), ("first", "last"), ("before", "after"), ("above", "below"),
    ("over", "under"), ("inside", "outside"), ("up", "down"), ("left", "right"),
    ("north", "south"), ("east", "west"), ("heavy", "light"), ("heaviest", "lightest"),
    ("rich", "poor"), ("richest", "poorest"), ("wet", "dry"), ("full", "empty"),
    ("love", "hate"), ("like", "dislike"), ("accept", "reject"), ("allow", "deny"),
    ("allow", "block"), ("include", "exclude"), ("success", "failure"), ("sunrise", "sunset"),
    ("summer", "winter"), ("spring", "autumn"), ("spring", "fall"), ("day", "night"),
    ("morning", "evening"), ("brief", "detailed"), ("short", "detailed"),
    ("concise", "detailed"), ("formal", "informal"), ("ascending", "descending"),
    ("male", "female"), ("men", "women"), ("boys", "girls"), ("arrival", "departure"),
    ("import", "export"), ("imports", "exports"), ("connect", "disconnect"),
    ("attack", "defense"), ("acid", "base"), ("acidic", "alkaline"), ("wrong", "right"),
    ("advantages", "disadvantages"), ("lowercase", "uppercase"), ("lock", "unlock"),
    ("install", "uninstall"), ("mean", "median"), ("synchronous", "asynchronous"),
    ("sync", "async"), ("vertical", "horizontal"), ("freeze", "melt"), ("freezing", "boiling"),
)  # fmt: skip

# Prefixes that turn a word into its opposite ("possible"/"impossible").
NEGATING_PREFIXES = ("un", "in", "im", "il", "ir", "dis", "non", "anti")

# Words after which the next content word takes a role that a reordering would change
# ("from London to Paris", "faster than Java").
RELATION_MARKERS = frozenset(
    {"from", "to", "into", "than", "before", "after", "over", "under", "above", "below",
     "versus", "vs", "against", "by", "per", "onto", "toward", "towards"}
)  # fmt: skip

STOPWORDS = frozenset(
    {"a", "an", "the", "is", "are", "was", "were", "be", "been", "being", "am", "do", "does",
     "did", "doing", "done", "i", "me", "my", "mine", "we", "our", "you", "your", "it", "its",
     "they", "them", "their", "he", "she", "his", "her", "this", "that", "these", "those",
     "what", "which", "who", "whom", "whose", "when", "where", "why", "how", "of", "in", "on",
     "at", "for", "with", "about", "as", "and", "or", "but", "if", "so", "can", "could",
     "would", "should", "will", "shall", "may", "might", "must", "please", "tell", "give",
     "explain", "describe", "show", "let", "know", "want", "need", "some", "any", "there",
     "here", "just", "really", "very", "much", "many", "also", "then", "there's", "what's",
     "whats", "hey", "hi", "kindly", "quick", "quickly", "question", "s", "way", "ways",
     "get", "go", "make", "use", "using", "via", "like", "other", "such", "all",
     "each", "every", "same", "own", "one's", "someone", "something", "thing", "things",
     "exactly", "actually", "basically", "mean", "means", "called", "name", "named"}
)  # fmt: skip

DETERMINERS = frozenset({"a", "an", "the", "my", "your", "our", "their", "his", "her", "its",
                         "this", "that", "these", "those", "some"})  # fmt: skip

# Function words that identify a prompt's language when it is written in a Latin script.
LANGUAGE_MARKERS = {
    "en": frozenset({"the", "is", "what", "how", "of", "and", "are", "does", "do", "which",
                     "who", "why", "with", "can", "you", "me", "my", "it", "this"}),
    "fr": frozenset({"le", "les", "est", "quelle", "quel", "quels", "des", "et", "comment",
                     "une", "du", "pourquoi", "qui", "avec", "je", "vous", "sont", "dans",
                     "pour", "au", "aux", "ce", "cette", "moi", "qu'est-ce"}),
    "de": frozenset({"der", "die", "das", "ist", "was", "wie", "und", "ein", "eine", "von",
                     "warum", "wer", "mit", "ich", "sie", "sind", "den", "dem", "nicht",
                     "welche", "welcher", "mir", "zu", "im", "es"}),
    "es": frozenset({"el", "los", "las", "es", "qué", "que", "cómo", "como", "y", "una",
                     "por", "para", "quién", "cuál", "cual", "con", "yo", "son", "del",
                     "está", "dónde", "mi", "se", "lo"}),
    "it": frozenset({"il", "gli", "è", "che", "come", "di", "e", "una", "perché", "chi",
                     "con", "sono", "della", "del", "qual", "quale", "cosa", "mi", "nel"}),
    "pt": frozenset({"o", "os", "é", "que", "como", "um", "uma", "por", "para", "quem",
                     "qual", "com", "eu", "são", "do", "da", "não", "em", "onde"}),
}  # fmt: skip

# Names worth recognizing even when typed in lower case.
KNOWN_ENTITIES = frozenset(
    {"france", "germany", "spain", "italy", "portugal", "england", "britain", "uk", "usa",
     "america", "canada", "mexico", "brazil", "argentina", "chile", "peru", "colombia",
     "china", "japan", "korea", "india", "pakistan", "russia", "ukraine", "poland",
     "sweden", "norway", "finland", "denmark", "netherlands", "belgium", "switzerland",
     "austria", "greece", "turkey", "egypt", "nigeria", "kenya", "australia",
     "zealand", "ireland", "scotland", "iran", "iraq", "israel", "vietnam", "thailand",
     "indonesia", "philippines", "europe", "asia", "africa", "antarctica",
     "paris", "london", "berlin", "madrid", "rome", "lisbon", "tokyo", "beijing", "moscow",
     "delhi", "mumbai", "sydney", "toronto", "chicago", "boston", "seattle", "york",
     "amsterdam", "vienna", "prague", "dublin", "oslo", "stockholm", "helsinki", "athens",
     "cairo", "nairobi", "lagos", "seoul", "bangkok", "singapore", "dubai", "istanbul",
     "barcelona", "munich", "milan", "venice", "zurich", "geneva", "brussels", "warsaw",
     "budapest", "ottawa", "canberra", "wellington", "lima", "bogota", "santiago",
     "english", "french", "german", "spanish", "italian", "portuguese", "chinese",
     "japanese", "korean", "russian", "arabic", "hindi", "dutch", "swedish", "polish",
     "greek", "turkish", "latin", "hebrew", "mandarin",
     "python", "java", "javascript", "typescript", "rust", "golang", "ruby", "php",
     "kotlin", "swift", "scala", "haskell", "perl", "c++", "c#", "sql", "bash", "linux",
     "windows", "macos", "android", "ios", "docker", "kubernetes", "postgres", "postgresql",
     "mysql", "redis", "mongodb", "react", "vue", "angular", "django", "flask", "numpy",
     "pandas", "git", "aws", "azure", "gcp",
     "mars", "venus", "jupiter", "saturn", "mercury", "earth", "moon", "sun", "pluto",
     "neptune", "uranus",
     "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday",
     "january", "february", "march", "april", "june", "july", "august", "september",
     "october", "november", "december"}
)  # fmt: skip
