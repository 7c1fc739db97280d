<?php

declare(strict_types=1);

namespace Ebats\Tests;

use Asynclib\Exception\RetryException;
use Ebats\Tests\Lib\EbatsTestCase;

/** A RetryException's retry count and interval are 0 or more: a negative one is refused when it is made. */
final class RetryExceptionRangeTest extends EbatsTestCase
{
    protected const USES_BROKER = false;

    public function refused(): array
    {
        return [
            'negative both' => [-5, -5, 'Argument #2 ($retry) must be between 0 and 4294967295 (or null), -5 given'],
            'negative retry' => [-1, null, 'Argument #2 ($retry) must be between 0 and 4294967295 (or null), -1 given'],
            'negative interval' => [3, -1, 'Argument #3 ($interval) must be between 0 and 268435455 (or null), -1 given'],
            'retry too large' => [PHP_INT_MAX, 1, 'Argument #2 ($retry) must be between 0 and 4294967295'],
            'interval too large' => [1, 268435456, 'Argument #3 ($interval) must be between 0 and 268435455'],
            'negative numeric string' => [null, '-7', 'Argument #3 ($interval) must be between 0 and 268435455 (or null), -7 given'],
        ];
    }

    /** @dataProvider refused */
    public function testOutOfRangeIsAValueError(mixed $retry, mixed $interval, string $message): void
    {
        try {
            new RetryException('m', $retry, $interval);
            $this->fail('RetryException accepted retry ' . var_export($retry, true) . ', interval ' . var_export($interval, true));
        } catch (\ValueError $e) {
            $this->assertStringStartsWith('Asynclib\Exception\RetryException::__construct(): ', $e->getMessage());
            $this->assertStringContainsString($message, $e->getMessage());
        }
    }

    public function testNamedArgumentIsCheckedToo(): void
    {
        $this->expectException(\ValueError::class);
        $this->expectExceptionMessage('Argument #3 ($interval)');
        new RetryException(message: 'named', interval: -30);
    }

    public function testBoundsAndNullsAreAccepted(): void
    {
        $e = new RetryException('m', 0, 0);
        $this->assertSame([0, 0], [$e->getRetry(), $e->getInterval()]);
        $e = new RetryException('m', 4294967295, 268435455);
        $this->assertSame([4294967295, 268435455], [$e->getRetry(), $e->getInterval()]);
        $e = new RetryException('m', null, null);
        $this->assertSame([null, null], [$e->getRetry(), $e->getInterval()]);
        $this->assertSame('m', $e->getMessage());
    }

    public function testWrongTypeIsStillATypeError(): void
    {
        $this->expectException(\TypeError::class);
        $this->expectExceptionMessage('Argument #2 ($retry) must be of type ?int');
        new RetryException('m', []);
    }
}
