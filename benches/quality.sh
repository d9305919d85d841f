#!/usr/bin/env bash
# Spam detection quality: conbool (rules + classifier) against SpamAssassin (local tests only,
# its Bayes trained on the same folds), on the labelled corpus, in one run.
#
#   bash benches/quality.sh                       # ../shared/corpus/labels.tsv, 5 folds
#   LABELS=path/labels.tsv FOLDS=5 bash benches/quality.sh
#   QUICK=1 bash benches/quality.sh               # every 4th message, 3 folds (CI)
#
# Both see the same messages, written by `conbool eval --copies-out`: with the collectors'
# artefact headers (X-Spam-*, X-Bogosity, Status ... see ../shared/corpus/README.md, and the
# other receiving filters' verdicts: X-Barracuda-*, X-Amavis*, ...; and the fields final
# delivery into the collectors' mailboxes added: Delivered-To, X-Original-To, ...;
# `is_collection_artefact` in src/classify/token.rs) removed, the collectors' own `Received`
# hops above the entry hop removed (benches/corpus-internal-hosts.txt) and the mbox `From `
# line dropped: SpamAssassin would otherwise read its own old verdicts, both would learn other
# filters' ones and the collectors' relays, which are not there at the relay's place. SpamAssassin runs with `-L` semantics (local_tests_only: no DNS, Razor, Pyzor
# or DCC), Bayes on (sa-learn on the other folds), auto-learn and TxRep/AWL off,
# required_score 5.0. Installs spamassassin with apt-get when missing.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
LABELS="${LABELS:-$ROOT/../shared/corpus/labels.tsv}"
FOLDS="${FOLDS:-5}"
WORK="${WORK:-$(mktemp -d)}"
# The collectors' hosts of ../shared/corpus (`conbool eval --internal-hosts`); empty: none.
INTERNAL_HOSTS="${INTERNAL_HOSTS-$ROOT/benches/corpus-internal-hosts.txt}"
if [ "${QUICK:-0}" = 1 ]; then FOLDS="${FOLDS_QUICK:-3}"; STEP=4; else STEP=1; fi

if [ ! -f "$LABELS" ]; then echo "skipping: no labels at $LABELS"; exit 0; fi
if ! command -v sa-learn >/dev/null; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get install -y spamassassin >/dev/null || { $SUDO apt-get update -qq && $SUDO apt-get install -y spamassassin >/dev/null; }
fi

cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml"
# The messages as they arrive at the relay's place, written by `conbool eval --copies-out`:
# without the mbox `From ` line, the collectors' and other filters' fields and the collectors'
# own `Received` hops above the one where each message came in (`prepared` in
# src/cli/train.rs). That one stays, as the MTA in front of SpamAssassin would write it;
# `conbool eval --internal-hosts` drops it again (the relay writes it after its scan), so
# conbool judges here exactly what it judges on the corpus. Then every STEP-th message. The
# copies keep their paths relative to the labels file, so `conbool eval` deals the same folds
# here as on the corpus itself (it orders messages by a hash of the path).
"$ROOT/target/release/conbool" eval --labels "$LABELS" ${INTERNAL_HOSTS:+--internal-hosts "$INTERNAL_HOSTS"} \
    --copies-out "$WORK/msgs"
awk -v step="$STEP" 'NR == 1 { print; next } (NR - 2) % step == 0' "$WORK/msgs/labels.tsv" \
    > "$WORK/msgs/judged.tsv"

echo "== conbool ($FOLDS-fold cross-validation, $(($(wc -l < "$WORK/msgs/judged.tsv") - 1)) messages)"
"$ROOT/target/release/conbool" eval --labels "$WORK/msgs/judged.tsv" --folds "$FOLDS" \
    ${INTERNAL_HOSTS:+--internal-hosts "$INTERNAL_HOSTS"} \
    --folds-out "$WORK/folds.tsv" | tee "$WORK/conbool.txt"

echo
echo "== SpamAssassin $(spamassassin --version | head -1 | awk '{print $3}') (-L, Bayes trained on the same folds)"
start=$(date +%s)
: > "$WORK/sa-verdicts.tsv"
for ((k = 0; k < FOLDS; k++)); do
    d="$WORK/sa/$k"; mkdir -p "$d/spam" "$d/ham"
    awk -v k="$k" -v dir="$WORK/msgs" -v d="$d" 'NR > 1 && $4 != k { print dir "/" $1 > (d "/" $2 ".list") }' FS='\t' "$WORK/folds.tsv"
    cat > "$d/prefs" <<PREFS
use_bayes 1
bayes_auto_learn 0
use_auto_whitelist 0
required_score 5.0
bayes_path $d/bayes
PREFS
    xargs -a "$d/spam.list" sa-learn --local --prefspath="$d/prefs" --dbpath "$d" --spam >/dev/null 2>>"$WORK/sa-stderr.log"
    xargs -a "$d/ham.list" sa-learn --local --prefspath="$d/prefs" --dbpath "$d" --ham >/dev/null 2>>"$WORK/sa-stderr.log"
    awk -v k="$k" -v dir="$WORK/msgs" 'NR > 1 && $4 == k { print dir "/" $1 "\t" $1 }' FS='\t' "$WORK/folds.tsv" \
        > "$d/test.list"
    perl -MMail::SpamAssassin -e '
        my ($prefs, $list) = @ARGV;
        my $sa = Mail::SpamAssassin->new({ local_tests_only => 1, userprefs_filename => $prefs,
                                           dont_copy_prefs => 1 });
        $sa->init(1);
        open my $l, "<", $list or die;
        while (<$l>) {
            chomp; my ($path, $name) = split /\t/;
            open my $in, "<:raw", $path or die; local $/; my $m = <$in>; close $in;
            my $mail = $sa->parse($m);
            my $st = $sa->check($mail);
            printf "%s\t%d\t%.1f\n", $name, $st->is_spam ? 1 : 0, $st->get_score;
            $st->finish; $mail->finish;
        }' "$d/prefs" "$d/test.list" >> "$WORK/sa-verdicts.tsv" 2>>"$WORK/sa-stderr.log"
done
elapsed=$(($(date +%s) - start))
# SpamAssassin's Bayes journal warnings (thousands of lines) stay out of the report.
echo "(SpamAssassin wrote $(wc -l < "$WORK/sa-stderr.log") lines on stderr: $WORK/sa-stderr.log)"

# The same table as `conbool eval` prints, from SpamAssassin's verdicts.
awk -v secs="$elapsed" '
    FNR == NR { flag[$1] = $2; next }
    FNR > 1 {
        s = $3; if (!(s in seen)) { seen[s] = 1; order[++n] = s }
        if ($2 == "spam") { spam[s]++; caught[s] += flag[$1]; spam["pooled"]++; caught["pooled"] += flag[$1] }
        else { ham[s]++; fp[s] += flag[$1]; ham["pooled"]++; fp["pooled"] += flag[$1] }
    }
    END {
        order[++n] = "pooled"
        print "SpamAssassin (required_score 5.0)"
        printf "%-14s %5s %10s %7s %5s %8s %8s %6s\n", "source", "ham", "FP", "FP %", "spam", "caught", "recall %", "F1"
        for (i = 1; i <= n; i++) {
            s = order[i]; p = caught[s] + fp[s] > 0 ? caught[s] / (caught[s] + fp[s]) : 0
            r = spam[s] > 0 ? caught[s] / spam[s] : 0; f1 = p + r > 0 ? 2 * p * r / (p + r) : 0
            printf "%-14s %5d %10d %7.2f %5d %8d %8.2f %6.4f\n", s, ham[s], fp[s], ham[s] ? 100 * fp[s] / ham[s] : 0, spam[s], caught[s], 100 * r, f1
        }
        printf "\n(%d s for training and checking)\n", secs
    }' FS='\t' "$WORK/sa-verdicts.tsv" "$WORK/folds.tsv" | tee "$WORK/spamassassin.txt"
echo
echo "work files: $WORK"
