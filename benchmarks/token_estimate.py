"""How far `estimate_tokens` is from real tokenizers: the figures in its docstring.

    .venv/bin/python benchmarks/token_estimate.py

The reference tokenizers are OpenAI's o200k_base (GPT-4o, GPT-4o-mini, o1, …)
and cl100k_base (GPT-4, GPT-3.5), exact BPE, from the `bpe-openai` package,
whose wheel bundles both vocabularies: nothing is downloaded at run time
(`tiktoken` would fetch its .tiktoken files). The script installs the package
into the running interpreter's environment when it is missing. Not run by pytest.

The corpus is generated here, seeded: English and Turkish sentences (prose,
questions, numbers, code, JSON, lists) joined 1-34 at a time. The sentence
pools are split in two: texts built from the even-numbered sentences are the
*fitting* half (used only to fit the linear weights printed for reference),
texts from the odd-numbered ones plus every turn of the ShareGPT sample are the
*held-out* half that the reported errors come from.

Relative error of one text = |estimate − true| / true; the table gives the mean
and the 95th percentile over the texts.
"""

from __future__ import annotations

import importlib
import json
import math
import random
import re
import statistics
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from onybench.load.datasets import (  # noqa: E402
    _FINISHERS,
    FILLER_WORDS,
    LengthDistribution,
    estimate_tokens,
    synthetic,
)

SHAREGPT_SAMPLE = ROOT / "scenarios" / "data" / "sharegpt-sample.json"
TOKENIZER_PACKAGE = "bpe-openai==0.1.4"

ENGLISH = [
    "The quick brown fox jumps over the lazy dog.",
    "Could you explain how a hash map handles collisions?",
    "In 2023, global sales rose by 4.7% to $1.28 trillion, according to the annual report.",
    "Please summarize the following meeting notes in three bullet points.",
    "I'm not sure whether the bug is in the parser or in the tokenizer; it only happens "
    "with long inputs.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "Write a short story about a lighthouse keeper who finds a message in a bottle.",
    "The function returns None when the list is empty, which callers often forget to check.",
    "What are the pros and cons of remote work for a small startup?",
    "Heat the oven to 200°C, then bake the bread for 35\u201340 minutes until golden.",
    'She said, "We\'ll ship it on Monday," but the release slipped to Thursday.',
    "Mitochondria are often called the powerhouse of the cell.",
    "Refactor this code so that it uses a context manager instead of try/finally.",
    "The committee's decision, announced late on Friday, surprised nearly everyone.",
    "Large language models predict the next token given all the previous ones.",
    "Our API returns HTTP 429 when a client exceeds 600 requests per minute.",
    "Can you recommend three books on the history of mathematics?",
    "The train from London to Edinburgh takes about four and a half hours.",
    "Don't forget to update the README, the CHANGELOG and the version number.",
    "Quantum computers use qubits, which can be in superpositions of 0 and 1.",
    "Translate the sentence into French and explain any idioms you used.",
    "Her research focuses on antibiotic resistance in hospital-acquired infections.",
    "List the planets of the solar system in order of their distance from the sun.",
    "Interest rates were held at 5.25%, the central bank said on Wednesday.",
    "To reset your password, click the link in the email we just sent you.",
    "The results table has 12 columns and roughly 3,400 rows.",
    "Why does ice float on water even though it is a solid?",
    "Respond only with valid JSON that matches the schema below.",
    "He had never seen the sea before, and the sound of it frightened him a little.",
    "Kubernetes schedules pods onto nodes based on resource requests and limits.",
    "What's the time complexity of inserting into a balanced binary search tree?",
    "Add a unit test that fails before the fix and passes after it.",
    "The museum is open from 9 a.m. to 5 p.m., except on public holidays.",
    "Explain the difference between TCP and UDP to a high-school student.",
    "Our quarterly revenue target is ambitious but achievable if churn stays below 2%.",
    "Rewrite this paragraph in a more formal tone suitable for a grant proposal.",
    "The violinist played Bach's Partita No. 2 without a single wrong note.",
    "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)",
    "SELECT name, COUNT(*) FROM users GROUP BY name HAVING COUNT(*) > 1;",
    '{"model": "gpt-4o-mini", "stream": true, "max_tokens": 256}',
    'for i in range(10):\n    print(f"{i:>3} {i * i:>5}")',
    "- milk\n- eggs\n- flour\n- 2 kg of apples",
    "Error: connection refused (os error 111) while connecting to 127.0.0.1:8080",
    "https://example.com/docs/getting-started?lang=en#install",
    "Notwithstanding the aforementioned considerations, the counterarguments are unconvincing.",
]
TURKISH = [
    "Bugün hava çok güzel, parkta yürüyüş yapmaya ne dersin?",
    "Bu fonksiyon boş bir liste aldığında neden hata veriyor?",
    "Türkiye'nin en uzun nehri Kızılırmak'tır ve Karadeniz'e dökülür.",
    "Lütfen aşağıdaki metni üç maddede özetler misin?",
    "Geçen yıl şirketimizin cirosu yüzde 12 artarak 48 milyon liraya ulaştı.",
    "Yapay zekâ modelleri bir sonraki kelimeyi tahmin ederek metin üretir.",
    "Çayı demledikten sonra en az on dakika bekletmek gerekir.",
    "İstanbul Boğazı, Avrupa ile Asya'yı birbirinden ayırır.",
    "Kitaplarımızdan birini kütüphaneye bağışlamaya karar verdik.",
    "Toplantı yarın sabah saat 09.30'da üçüncü kattaki salonda yapılacak.",
    "Öğrencilerin çoğu sınavın beklediklerinden daha zor olduğunu söyledi.",
    "Bu kodu, try/finally yerine bir bağlam yöneticisi kullanacak şekilde yeniden yazar mısın?",
    "Güneş sistemindeki gezegenleri Güneş'e olan uzaklıklarına göre sırala.",
    "Annem her pazar sabahı menemen ve taze simit hazırlardı.",
    "Sunucumuz dakikada 600'den fazla istek gelirse HTTP 429 döndürür.",
    "Mercimek çorbasına biraz limon sıkarsan tadı çok daha güzel olur.",
    "Ankara, 13 Ekim 1923'te Türkiye'nin başkenti ilan edildi.",
    "Şikâyetinizi aldık; en geç üç iş günü içinde size dönüş yapacağız.",
    "Bu makalede iklim değişikliğinin tarım üzerindeki etkilerini inceliyoruz.",
    "Çocuklar bahçede top oynarken yağmur birdenbire bastırdı.",
    "Veritabanındaki kullanıcıları isimlerine göre gruplayan bir SQL sorgusu yaz.",
    "Müşterilerimizin memnuniyeti bizim için her şeyden önemlidir.",
    "Kapadokya'da sıcak hava balonuyla gün doğumunu izlemek unutulmaz bir deneyimdi.",
    "Uygulamayı güncelledikten sonra giriş ekranı açılmıyor, ne yapmalıyım?",
    "Osmanlı İmparatorluğu yaklaşık altı yüz yıl boyunca hüküm sürdü.",
    "Görüşmelerimizin sonucunu önümüzdeki hafta sizinle paylaşacağız.",
    "Bilgisayarımın fanı çok ses çıkarıyor; temizlemem gerekiyor olabilir.",
    "Evdeki bitkileri haftada iki kez, toprağı kuruduğunda sulamalısın.",
    "Bu cümleyi İngilizceye çevirip kullandığın deyimleri açıklar mısın?",
    "Ekonomistler faiz oranlarının yıl sonuna kadar sabit kalacağını öngörüyor.",
    "Yazılımcılar genellikle hataları bulmak için birim testleri kullanır.",
    "Köprünün üzerinden geçen vapurları izlemek bana huzur veriyor.",
    "Karşılaştığınız sorunu daha ayrıntılı anlatabilir misiniz?",
    "Sınav sonuçları cuma günü öğleden sonra açıklanacak.",
    "Büyükannemin anlattığı masallar hâlâ aklımda.",
    "Hesabınızın şifresini sıfırlamak için e-postadaki bağlantıya tıklayın.",
    "Türkçe eklemeli bir dil olduğu için kelimeler oldukça uzun olabilir.",
    "Çekoslovakyalılaştıramadıklarımızdanmışsınız sözcüğü Türkçenin en uzun "
    "kelimelerinden biridir.",
    "Hafta sonu İzmir'e gidip Kordon'da balık yiyeceğiz.",
    "Projenin teslim tarihi 15 Mart 2025 olarak belirlendi.",
]

Corpus = list[tuple[str, str]]  # (group, text)


def generated(english: Sequence[str], turkish: Sequence[str], seed: int) -> Corpus:
    """100 English, 100 Turkish and 30 mixed texts of 1-34 sentences each."""
    rng = random.Random(seed)
    texts = []
    for group, pool, count in (
        ("english", list(english), 100),
        ("turkish", list(turkish), 100),
        ("mixed", [*english, *turkish], 30),
    ):
        for _ in range(count):
            sentences = rng.choice([1, 2, 3, 5, 8, 13, 21, 34])
            texts.append((group, " ".join(rng.choice(pool) for _ in range(sentences))))
    return texts


def sharegpt_turns() -> Corpus:
    entries = json.loads(SHAREGPT_SAMPLE.read_text(encoding="utf-8"))
    return [("sharegpt", turn["value"]) for e in entries for turn in e["conversations"]]


# --- the estimators compared --------------------------------------------------

Estimator = Callable[[str], int]
_PIECE = re.compile(r"\w+|[^\w\s]")


def utf8_bytes_over_4(text: str) -> int:
    return max(1, round(len(text.encode()) / 4))


def chars_over_4(text: str) -> int:
    return max(1, round(len(text) / 4))


def words_and_punctuation(factor: float) -> Estimator:
    return lambda text: max(1, round(len(_PIECE.findall(text)) * factor))


def features(text: str) -> list[float]:
    """What `estimate_tokens` weighs: letter runs, letters, non-ASCII letters,
    digits, symbols, newlines."""
    runs = re.findall(r"[^\W\d_]+", text)
    return [
        len(runs),
        sum(len(run) for run in runs),
        sum(1 for run in runs for c in run if not c.isascii()),
        len(re.findall(r"\d", text)),
        len(re.findall(r"[^\w\s]", text)),
        text.count("\n"),
    ]


def fit_weights(texts: Corpus, count: Callable[[str], int]) -> list[float]:
    """Least squares on the relative error: minimise Σ (w·f(x) / n(x) − 1)²."""
    rows = [[f / count(t) for f in features(t)] for _, t in texts]
    size = len(rows[0])
    gram = [[sum(r[i] * r[j] for r in rows) for j in range(size)] for i in range(size)]
    rhs = [sum(r[i] for r in rows) for i in range(size)]
    for i in range(size):  # Gauss-Jordan with partial pivoting
        pivot = max(range(i, size), key=lambda k: abs(gram[k][i]))
        gram[i], gram[pivot] = gram[pivot], gram[i]
        rhs[i], rhs[pivot] = rhs[pivot], rhs[i]
        for k in range(size):
            if k != i:
                factor = gram[k][i] / gram[i][i]
                gram[k] = [a - factor * b for a, b in zip(gram[k], gram[i], strict=True)]
                rhs[k] -= factor * rhs[i]
    return [rhs[i] / gram[i][i] for i in range(size)]


def relative_errors(estimate: Estimator, count: Callable[[str], int], texts: Corpus) -> list[float]:
    return sorted(abs(estimate(t) - count(t)) / count(t) for _, t in texts)


def mean_p95(errors: list[float]) -> str:
    p95 = errors[math.ceil(0.95 * len(errors)) - 1]
    return f"{statistics.mean(errors) * 100:5.1f} % / {p95 * 100:5.1f} %"


def tokenizers() -> dict[str, Any]:
    try:
        bpe = importlib.import_module("bpe_openai")
    except ImportError:
        print(f"installing {TOKENIZER_PACKAGE} (bundles the o200k_base and cl100k_base files)")
        subprocess.run([sys.executable, "-m", "pip", "install", TOKENIZER_PACKAGE], check=True)
        bpe = importlib.import_module("bpe_openai")
    return {name: bpe.get_encoding(name) for name in ("o200k_base", "cl100k_base")}


def main() -> None:
    encodings = tokenizers()
    fitting = generated(ENGLISH[::2], TURKISH[::2], seed=1)
    held_out = generated(ENGLISH[1::2], TURKISH[1::2], seed=2) + sharegpt_turns()
    groups = ("english", "turkish", "mixed", "sharegpt")
    print(f"held-out texts: {len(held_out)} ({', '.join(groups)}); fitting texts: {len(fitting)}")

    for name, encoding in encodings.items():
        cache: dict[str, int] = {}

        def count(text: str, encoding: Any = encoding, cache: dict[str, int] = cache) -> int:
            if text not in cache:
                cache[text] = len(encoding.encode(text))
            return cache[text]

        weights = fit_weights(fitting, count)
        print(f"\n== {name}: relative error, mean / p95, on held-out texts")
        print("   weights fitted on the fitting half (runs, letters, non-ASCII, digits, symbols,")
        print(f"   newlines): {', '.join(f'{w:.3f}' for w in weights)}")
        estimators: dict[str, Estimator] = {
            "estimate_tokens (shipped)": estimate_tokens,
            "utf-8 bytes / 4": utf8_bytes_over_4,
            "characters / 4": chars_over_4,
            "words+punct × 1.1": words_and_punctuation(1.1),
        }
        print(f"   {'estimator':27} {'all':>17}  " + "  ".join(f"{g:>17}" for g in groups))
        for label, estimate in estimators.items():
            cells = [mean_p95(relative_errors(estimate, count, held_out))]
            for group in groups:
                texts = [item for item in held_out if item[0] == group]
                cells.append(mean_p95(relative_errors(estimate, count, texts)))
            print(f"   {label:27} " + "  ".join(f"{c:>17}" for c in cells))

        not_single = [w for w in FILLER_WORDS if len(encoding.encode(" " + w)) != 1]
        finishers = [w for w in _FINISHERS.values() if len(encoding.encode(" " + w)) != 1]
        print(f"   filler words that are not one token: {not_single or 'none'}")
        print(f"   finishing words that are not one token: {finishers or 'none'}")
        for unique in (False, True):
            for length in (16, 128, 1024, 4096):
                prompts = synthetic(
                    20, LengthDistribution("fixed", length), None, seed=7, unique_prefix=unique
                )
                counts = [count(p.messages[0]["content"]) for p in prompts]
                assert all(p.input_tokens == length for p in prompts)
                print(
                    f"   synthetic {length:5} tokens{' +prefix' if unique else '        '}: "
                    f"true {min(counts)}-{max(counts)}, mean error "
                    f"{statistics.mean(c - length for c in counts) / length * 100:+.1f} %"
                )


if __name__ == "__main__":
    main()
