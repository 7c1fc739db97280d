<?php

declare(strict_types=1);

namespace Ebats\Tests;

use Asynclib\Ebats\Task;
use Asynclib\Exception\ConnectionedException;
use Asynclib\Exception\ExceptionInterface;
use Asynclib\Exception\RetryException;
use Asynclib\Exception\ServiceException;
use Asynclib\Exception\TaskException;
use Ebats\Tests\Fixtures\MyRetry;
use Ebats\Tests\Fixtures\PaymentDeclined;
use Ebats\Tests\Fixtures\SlowRetry;
use Ebats\Tests\Lib\EbatsTestCase;

/** Issue item 7: the four exception classes behave like ordinary PHP exceptions. */
final class ExceptionsTest extends EbatsTestCase
{
    protected const USES_BROKER = false;

    public function exceptionClasses(): array
    {
        return [
            'RetryException' => [RetryException::class],
            'TaskException' => [TaskException::class],
            'ServiceException' => [ServiceException::class],
            'ConnectionedException' => [ConnectionedException::class],
        ];
    }

    public function testExceptionInterfaceIsAnInterface(): void
    {
        $this->assertTrue(interface_exists(ExceptionInterface::class), 'interface ' . ExceptionInterface::class . ' missing');
        $this->assertTrue((new \ReflectionClass(ExceptionInterface::class))->isInterface());
    }

    /** @dataProvider exceptionClasses */
    public function testHierarchyAndBasics(string $class): void
    {
        $this->assertTrue(class_exists($class), "class $class missing");
        $rc = new \ReflectionClass($class);
        $this->assertFalse($rc->isInterface());
        $this->assertFalse($rc->isAbstract());
        $this->assertTrue($rc->isSubclassOf(\RuntimeException::class), "$class must extend RuntimeException");
        $this->assertTrue($rc->implementsInterface(ExceptionInterface::class), "$class must implement ExceptionInterface");

        $previous = new \LogicException('cause');
        $line = __LINE__ + 1;
        $e = new $class('something failed');
        $this->assertInstanceOf(\RuntimeException::class, $e);
        $this->assertInstanceOf(ExceptionInterface::class, $e);
        $this->assertInstanceOf(\Throwable::class, $e);
        $this->assertSame('something failed', $e->getMessage());
        $this->assertSame(0, $e->getCode());
        $this->assertNull($e->getPrevious());
        $this->assertSame(__FILE__, $e->getFile());
        $this->assertSame($line, $e->getLine());
        $this->assertStringContainsString($class . ': something failed', (string) $e);
        $this->assertStringContainsString(__CLASS__ . '->' . __FUNCTION__, $e->getTraceAsString(), 'the trace starts where it was made');

        $empty = new $class();
        $this->assertSame('', $empty->getMessage());

        $withCode = $class === RetryException::class
            ? new RetryException('coded', null, null, 42, $previous)
            : new $class('coded', 42, $previous);
        $this->assertSame(42, $withCode->getCode());
        $this->assertSame($previous, $withCode->getPrevious());

        try {
            throw new $class('thrown');
        } catch (ExceptionInterface $caught) {
            $this->assertSame('thrown', $caught->getMessage());
            $this->assertSame($class, get_class($caught));
        }
        try {
            throw new $class('as runtime');
        } catch (\RuntimeException $caught) {
            $this->assertSame('as runtime', $caught->getMessage());
        }
    }

    public function testRetryExceptionValues(): void
    {
        $line = __LINE__ + 1;
        $e = new RetryException('m', 3, 10);
        $this->assertSame('m', $e->getMessage());
        $this->assertSame(3, $e->getRetry());
        $this->assertSame(10, $e->getInterval());
        $this->assertSame(__FILE__, $e->getFile());
        $this->assertSame($line, $e->getLine());

        $defaults = new RetryException('m');
        $this->assertNull($defaults->getRetry());
        $this->assertNull($defaults->getInterval());

        $nulls = new RetryException('m', null, null);
        $this->assertNull($nulls->getRetry());
        $this->assertNull($nulls->getInterval());

        $named = new RetryException(message: 'named', interval: 30);
        $this->assertSame('named', $named->getMessage());
        $this->assertNull($named->getRetry());
        $this->assertSame(30, $named->getInterval());

        $zero = new RetryException('z', 0, 0);
        $this->assertSame(0, $zero->getRetry());
        $this->assertSame(0, $zero->getInterval());
    }

    public function testRetryExceptionThrownAndCaught(): void
    {
        $line = __LINE__ + 2;
        $thrower = static function (): void {
            throw new RetryException('try later', 2, 5);
        };
        try {
            $thrower();
            $this->fail('not thrown');
        } catch (ExceptionInterface $e) {
            $this->assertInstanceOf(RetryException::class, $e);
            $this->assertSame('try later', $e->getMessage());
            $this->assertSame(2, $e->getRetry());
            $this->assertSame(5, $e->getInterval());
            $this->assertSame(__FILE__, $e->getFile());
            $this->assertSame($line, $e->getLine());
        }
    }

    public function testPhpSubclasses(): void
    {
        require_once __DIR__ . '/../fixtures/exceptions.php';

        $line = __LINE__ + 1;
        $mine = new MyRetry('m', 3, 10);
        $this->assertInstanceOf(RetryException::class, $mine);
        $this->assertInstanceOf(ExceptionInterface::class, $mine);
        $this->assertSame(MyRetry::class, get_class($mine), 'a PHP subclass must instantiate as itself');
        $this->assertSame('m', $mine->getMessage());
        $this->assertSame(3, $mine->getRetry());
        $this->assertSame(10, $mine->getInterval());
        $this->assertSame($line, $mine->getLine());
        try {
            throw new MyRetry('sub thrown', 1, 2);
        } catch (ExceptionInterface $e) {
            $this->assertInstanceOf(MyRetry::class, $e);
            $this->assertSame('sub thrown', $e->getMessage());
            $this->assertSame(1, $e->getRetry());
        }

        $declined = new PaymentDeclined('FB1', 7);
        $this->assertInstanceOf(TaskException::class, $declined);
        $this->assertSame('payment declined for FB1', $declined->getMessage());
        $this->assertSame(7, $declined->getCode());
        $this->assertSame('FB1', $declined->orderId);

        $slow = new SlowRetry('slow');
        $this->assertSame('slow', $slow->getMessage());
        $this->assertSame(4, $slow->getRetry());
        $this->assertSame(120, $slow->getInterval(), 'overriding getInterval() and calling the parent works');
    }

    /** An exception thrown by the extension points at the PHP line that called it. */
    public function testExtensionThrownExceptionHasCallerFileAndLine(): void
    {
        try {
            $line = __LINE__ + 1;
            Task::create('', 'x');
            $this->fail('no exception');
        } catch (TaskException $e) {
            $this->assertSame(__FILE__, $e->getFile());
            $this->assertSame($line, $e->getLine());
            $this->assertNotSame('', $e->getMessage());
            $this->assertInstanceOf(ExceptionInterface::class, $e);
        }
    }
}
