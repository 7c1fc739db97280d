<?php

declare(strict_types=1);

namespace Ebats\Tests\Lib;

/**
 * The end-to-end ledger of numbered events: which numbers were published (publish() called), confirmed
 * (publish() returned), threw (publish() threw: reported, not counted as lost), and executed (a task handler
 * ran for the number, once or more). Lost = confirmed and never executed. Built from the record file
 * (kind=pub from tests/fixtures/ledger_producer.php, kind=run from the task handlers).
 */
final class Ledger
{
    /** @var array<int,bool> number => publish() returned */
    private array $published = [];
    /** @var array<int,int> number => handler runs */
    private array $executed = [];

    /**
     * @param list<array<string,mixed>> $records the record file's lines
     * @param string $tag the tag of this ledger's task runs (params.tag)
     */
    public static function fromRecords(array $records, string $tag): self
    {
        $l = new self();
        foreach ($records as $r) {
            if (($r['kind'] ?? null) === 'pub') {
                $l->published[(int) $r['n']] = (bool) $r['ok'];
            } elseif (($r['kind'] ?? null) === 'run' && ($r['params']['tag'] ?? null) === $tag) {
                $n = (int) $r['params']['n'];
                $l->executed[$n] = ($l->executed[$n] ?? 0) + 1;
            }
        }
        return $l;
    }

    public function published(): int
    {
        return count($this->published);
    }

    /** @return list<int> numbers whose publish() returned */
    public function confirmed(): array
    {
        return array_keys(array_filter($this->published));
    }

    public function threw(): int
    {
        return $this->published() - count($this->confirmed());
    }

    public function executed(): int
    {
        return count($this->executed);
    }

    /** Runs beyond the first, over every number. */
    public function duplicates(): int
    {
        return array_sum($this->executed) - count($this->executed);
    }

    /** @return list<int> confirmed numbers that never executed */
    public function lost(): array
    {
        return array_values(array_filter($this->confirmed(), fn (int $n): bool => !isset($this->executed[$n])));
    }

    public function line(string $scenario, float $recoverySeconds): string
    {
        return sprintf(
            'ledger %s: published %d, confirmed %d, threw %d, executed %d, duplicates %d, lost %d, recovery time %.1f s',
            $scenario,
            $this->published(),
            count($this->confirmed()),
            $this->threw(),
            $this->executed(),
            $this->duplicates(),
            count($this->lost()),
            $recoverySeconds
        );
    }
}
