"""The seed documents' task and object examples, run as written with `import shoal as ray`."""

from __future__ import annotations

import numpy as np
import shoal as ray


def test_square_tasks(cluster):
    @ray.remote
    def square(x):
        return x * x

    futures = [square.remote(i) for i in range(4)]
    assert ray.get(futures) == [0, 1, 4, 9]


def test_add_with_get_method_on_ref(cluster):
    @ray.remote
    def add(x, y):
        return x + y

    task = add.remote(2, 3)
    assert task.get() == 5


def test_add_remote_plain_and_remote(cluster):
    def add(a, b):
        return a + b

    @ray.remote
    def add_remote(a, b):
        return a + b

    result1 = add(10, 20)
    result2_future = add_remote.remote(10, 20)
    assert ray.get(result2_future) == result1 == 30


def test_process_matrix_with_put(cluster, recwarn):
    @ray.remote
    def process_matrix(matrix_ref):
        matrix = ray.get(matrix_ref)
        return np.sum(matrix)

    large_matrix = np.ones((1000, 1000))
    matrix_ref = ray.put(large_matrix)
    result = ray.get(process_matrix.remote(matrix_ref))
    assert result == 1000000.0


def test_put_list_and_pass_ref(cluster):
    @ray.remote
    def process_data(data):
        return [x * 2 for x in data]

    data_id = ray.put([1, 2, 3, 4])
    result_id = process_data.remote(data_id)
    assert ray.get(data_id) == [1, 2, 3, 4]
    assert ray.get(result_id) == [2, 4, 6, 8]
