"""Small JSON views: execution progress for the admin page."""

from django.contrib.admin.views.decorators import staff_member_required
from django.http import JsonResponse
from django.shortcuts import get_object_or_404

from importer.models import Execution
from importer.progress import progress_of


@staff_member_required
def execution_progress(request, pk: int):
    execution = get_object_or_404(Execution.objects.select_related("source"), pk=pk)
    return JsonResponse(progress_of(execution))
